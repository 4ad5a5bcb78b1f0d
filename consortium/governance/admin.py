"""Read-only back office for the roster: it changes only through the banks' signatures."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from consortium.governance.models import Objection, RosterSignature, RosterVersion


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RosterVersion)
class RosterVersionAdmin(ReadOnlyAdmin):
    list_display = ("number", "kind", "status", "summary", "proposed_at", "in_force_at")
    list_filter = ("status", "kind")


@admin.register(RosterSignature)
class RosterSignatureAdmin(ReadOnlyAdmin):
    list_display = ("version", "bank_id", "received_at")


@admin.register(Objection)
class ObjectionAdmin(ReadOnlyAdmin):
    list_display = ("bank", "round_number", "reason_code", "received_at")
    list_filter = ("reason_code",)

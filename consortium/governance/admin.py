"""Read-only back office for the roster: it changes only through the banks' signatures."""

from __future__ import annotations

from django.contrib import admin

from audit.admin import ReadOnlyAdmin
from consortium.governance.models import (
    DisputeClearance,
    Objection,
    RosterSignature,
    RosterVersion,
)


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


@admin.register(DisputeClearance)
class DisputeClearanceAdmin(ReadOnlyAdmin):
    list_display = ("round_number", "bank_id", "received_at")

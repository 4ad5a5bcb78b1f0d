"""Back-office view of representative links: read-only, since links are made (and audited)
on the bank's portal page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from consortium.portal.models import BankRepresentative


@admin.register(BankRepresentative)
class BankRepresentativeAdmin(admin.ModelAdmin):
    list_display = ("user", "bank", "created_at", "created_by")
    list_select_related = ("user", "bank")
    search_fields = ("user__username", "bank__slug")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

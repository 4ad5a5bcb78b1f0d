"""Back-office view of representative links: read-only, since links are made (and audited)
on the bank's portal page."""

from __future__ import annotations

from django.contrib import admin

from audit.admin import ReadOnlyAdmin
from consortium.portal.models import BankRepresentative


@admin.register(BankRepresentative)
class BankRepresentativeAdmin(ReadOnlyAdmin):
    list_display = ("user", "bank", "created_at", "created_by")
    list_select_related = ("user", "bank")
    search_fields = ("user__username", "bank__slug")

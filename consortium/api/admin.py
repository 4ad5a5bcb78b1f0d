"""django-axes' admin, with its clean-up action kept for operators (auditors only read)."""

from __future__ import annotations

from typing import Any

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin
from django.http import HttpRequest

from consortium.api.auth import user_is_operator


class OperatorActionsAccessAttemptAdmin(AccessAttemptAdmin):
    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Axes declares its action without permissions, so Django offers it to anyone who
        # may view the list; sign-in records are operators' business.
        return super().get_actions(request) if user_is_operator(request.user) else {}


if admin.site.is_registered(AccessAttempt):
    admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, OperatorActionsAccessAttemptAdmin)

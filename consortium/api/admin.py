"""Back office: django-axes' attempts (clean-up for operators only) and the security log."""

from __future__ import annotations

from typing import Any

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin
from django.http import HttpRequest

from audit.admin import ReadOnlyAdmin
from consortium.api.auth import user_is_operator
from consortium.api.models import SignInFailure


class OperatorActionsAccessAttemptAdmin(AccessAttemptAdmin):
    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Axes declares its action without permissions, so Django offers it to anyone who
        # may view the list; sign-in records are operators' business.
        return super().get_actions(request) if user_is_operator(request.user) else {}


if admin.site.is_registered(AccessAttempt):
    admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, OperatorActionsAccessAttemptAdmin)


@admin.register(SignInFailure)
class SignInFailureAdmin(ReadOnlyAdmin):
    """The security log, read-only for everyone: rows come only from failed sign-ins."""

    list_display = ("minute", "source", "username", "count", "last_at", "last_path")
    list_filter = ("minute",)
    search_fields = ("source", "username")
    date_hierarchy = "minute"

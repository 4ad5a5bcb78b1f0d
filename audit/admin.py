"""Read-only admin for the audit trail; user and group admins that name who changed access."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin
from django.contrib.auth.models import Group, User
from django.http import HttpRequest, HttpResponse

from audit.context import acting_as
from audit.models import AuditEvent, Checkpoint


class ReadOnlyAdmin(admin.ModelAdmin):
    """Everyone, superusers included, may only look: these rows change only through services
    (which audit the change) or, for the trail itself, never."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("seq", "created_at", "actor", "action", "object_type", "object_id")
    list_filter = ("action",)
    search_fields = ("actor", "object_id", "hash")


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ("seq", "signed_at", "reason", "head_hash")


class _ActingAdmin(admin.ModelAdmin):
    """Runs every view that can change access as the signed-in user.

    Group and permission changes reach the trail through ``m2m_changed``, which does
    not know who is acting; these views tell it. Mixed in before an existing admin class.
    """

    def _as(self, request: HttpRequest, view: Any, *args: Any, **kwargs: Any) -> HttpResponse:
        with acting_as(f"user:{request.user.get_username()}"):
            return view(request, *args, **kwargs)

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return self._as(request, super().changeform_view, *args, **kwargs)

    def changelist_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return self._as(request, super().changelist_view, *args, **kwargs)

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return self._as(request, super().delete_view, *args, **kwargs)


def _acting(admin_class: type[admin.ModelAdmin]) -> type[admin.ModelAdmin]:
    """``admin_class`` with :class:`_ActingAdmin`'s views in front of its own."""
    # type() rather than a class statement: mypy does not accept a variable as a base.
    acting = type(f"Audited{admin_class.__name__}", (_ActingAdmin, admin_class), {})
    return cast(type[admin.ModelAdmin], acting)


for _model in (User, Group):
    if admin.site.is_registered(_model):
        _current = type(admin.site.get_model_admin(_model))
        admin.site.unregister(_model)
        admin.site.register(_model, _acting(_current))

"""Sign-ins and permission changes, recorded from Django's own signals.

They come from the auth app rather than from our services, so the receivers live here;
who made a change comes from :func:`audit.context.acting_as` (set by the admin and our
commands), since ``m2m_changed`` does not know. Failed sign-ins are not here: anyone can
cause them, so they go to the bounded security log (``consortium.api.signals``) instead
of the hash chain.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as global_apps
from django.contrib.auth import signals as auth_signals
from django.contrib.auth.models import Group, Permission, User
from django.db.models import Model
from django.db.models.signals import m2m_changed, post_delete, post_migrate, post_save, pre_save

from audit.context import acting_as, current_actor
from audit.services import audit_record

AUDITORS_GROUP = "auditors"
USER_FLAGS = ("is_active", "is_staff", "is_superuser")
# Auditors see everything the portal holds, except other people's sessions.
_NOT_FOR_AUDITORS = ("sessions", "contenttypes")
# The flags a user row had before a save, kept on the instance from pre_save to post_save
# (the only place both signals can see); User has no such field, hence getattr/setattr.
_FLAGS_BEFORE = "_audit_flags_before"


def _ip(request: Any) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


def signed_in(sender: Any, request: Any, user: User, **kwargs: Any) -> None:
    audit_record(
        action="auth.signed_in",
        actor=f"user:{user.get_username()}",
        target=user,
        data={"ip": _ip(request), "path": getattr(request, "path", None)},
    )


def signed_out(sender: Any, request: Any, user: User | None, **kwargs: Any) -> None:
    if user is not None:
        audit_record(action="auth.signed_out", actor=f"user:{user.get_username()}", target=user)


def _flags_before(sender: Any, instance: User, update_fields: Any = None, **kwargs: Any) -> None:
    if instance.pk is None or (
        update_fields is not None and not set(update_fields) & set(USER_FLAGS)
    ):
        return
    before = User.objects.filter(pk=instance.pk).values(*USER_FLAGS).first()
    setattr(instance, _FLAGS_BEFORE, before)


def _user_saved(sender: Any, instance: User, created: bool, **kwargs: Any) -> None:
    if created:
        audit_record(
            action="auth.user_created",
            actor=current_actor(),
            target=instance,
            data={
                "username": instance.get_username(),
                **{f: getattr(instance, f) for f in USER_FLAGS},
            },
        )
        return
    before = getattr(instance, _FLAGS_BEFORE, None)
    setattr(instance, _FLAGS_BEFORE, None)
    if not before:
        return
    changed = {
        f: [before[f], getattr(instance, f)]
        for f in USER_FLAGS
        if before[f] != getattr(instance, f)
    }
    if changed:
        audit_record(
            action="auth.user_flags_changed",
            actor=current_actor(),
            target=instance,
            data={"username": instance.get_username(), "changed": changed},
        )


def _user_deleted(sender: Any, instance: User, **kwargs: Any) -> None:
    audit_record(
        action="auth.user_deleted",
        actor=current_actor(),
        data={"username": instance.get_username(), "id": instance.pk},
    )


def _label(obj: Model) -> str:
    if isinstance(obj, Permission):
        return f"{obj.content_type.app_label}.{obj.codename}"
    if isinstance(obj, User):
        return obj.get_username()
    return str(obj)


_M2M_ACTIONS = {
    User.groups.through: "auth.user_groups_changed",
    User.user_permissions.through: "auth.user_permissions_changed",
    Group.permissions.through: "auth.group_permissions_changed",
}


_ACCESSORS = {
    (User.groups.through, False): "groups",
    (User.groups.through, True): "user_set",
    (User.user_permissions.through, False): "user_permissions",
    (User.user_permissions.through, True): "user_set",
    (Group.permissions.through, False): "permissions",
    (Group.permissions.through, True): "group_set",
}


def _m2m_changed(
    sender: Any, instance: Model, action: str, reverse: bool, model: Any, pk_set: Any, **kw: Any
) -> None:
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if action == "pre_clear":
        # Nothing says what a clear() removed once it has happened: read it first.
        related = getattr(instance, _ACCESSORS[sender, reverse]).all()
    else:
        related = model.objects.filter(pk__in=pk_set or ())
    if model is Permission:
        related = related.select_related("content_type")
    related = list(related)
    if not related:
        return
    audit_record(
        action=_M2M_ACTIONS[sender],
        actor=current_actor(),
        target=instance,
        data={
            type(instance).__name__.lower(): _label(instance),
            "added" if action == "post_add" else "removed": sorted(_label(r) for r in related),
        },
    )


def auditors_group_sync(**kwargs: Any) -> Group:
    """Give the auditors group exactly the view permissions on every portal model.

    Run after every ``migrate`` (new models are covered the day they arrive) and by
    ``create_auditor``. A write permission granted to the group by hand is taken away.
    """
    group, _ = Group.objects.get_or_create(name=AUDITORS_GROUP)
    views = Permission.objects.filter(codename__startswith="view_").exclude(
        content_type__app_label__in=_NOT_FOR_AUDITORS
    )
    group.permissions.set(views)
    return group


def _after_migrate(sender: Any, **kwargs: Any) -> None:
    # post_migrate comes once per app; only after the last one do all permissions exist.
    last = [a for a in global_apps.get_app_configs() if a.models_module is not None][-1]
    if sender is last:
        with acting_as("system:migrate"):
            auditors_group_sync()


def connect() -> None:
    auth_signals.user_logged_in.connect(signed_in, dispatch_uid="audit.signed_in")
    auth_signals.user_logged_out.connect(signed_out, dispatch_uid="audit.signed_out")
    pre_save.connect(_flags_before, sender=User, dispatch_uid="audit.flags_before")
    post_save.connect(_user_saved, sender=User, dispatch_uid="audit.user_saved")
    post_delete.connect(_user_deleted, sender=User, dispatch_uid="audit.user_deleted")
    for through in _M2M_ACTIONS:
        m2m_changed.connect(_m2m_changed, sender=through, dispatch_uid=f"audit.m2m.{through}")
    post_migrate.connect(_after_migrate, dispatch_uid="audit.auditors_group")

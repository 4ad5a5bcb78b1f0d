"""Auditors read everything the trail holds and export it, and can change nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver

from audit.signals import AUDITORS_GROUP

pytestmark = pytest.mark.django_db

WRITES = ("post", "put", "patch", "delete")
# Rows that may change while someone merely reads: sessions and sign-in bookkeeping.
VOLATILE = {"sessions", "axes", "admin"}
SAMPLE = {"slug": "alpha", "bank": "alpha", "action": "suspend", "number": "1", "pk": "1",
          "name": "default", "version": "1", "uidb64": "MQ", "token": "set-password"}  # fmt: skip


def _routes(patterns: list[Any], prefix: str = "") -> list[str]:
    found = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += _routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            found.append(route)
    return found


def _url(route: str) -> str:
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: SAMPLE[m.group(1)], route).lstrip("^")


ROUTES = sorted(
    _url(r)
    for r in _routes(get_resolver().url_patterns)
    if not r.startswith(("admin/", "login/", "logout/"))
)


def _snapshot() -> dict[str, list[tuple]]:
    """Every row of every table that matters, to compare before and after."""
    return {
        model._meta.label: list(model._default_manager.order_by("pk").values_list())
        for model in apps.get_models()
        if model._meta.app_label not in VOLATILE
        and model is not User  # last_login moves on sign-in
    } | {"users": list(User.objects.order_by("pk").values_list("pk", "is_staff", "is_superuser"))}


def _signed_in(client: Any, auditor: Any) -> Any:
    auditor.is_staff = True
    auditor.save()
    client.force_login(auditor)
    return client


@pytest.fixture
def as_auditor(client, auditor, open_round):
    """An auditor's browser, with banks, a policy, a key epoch and an open round about."""
    return _signed_in(client, auditor)


@pytest.fixture
def as_auditor_with_history(client, auditor, round_history):
    """The same, with a published and a failed round, checkpoints and metrics too."""
    return _signed_in(client, auditor)


def test_the_route_list_covers_the_write_endpoints():
    assert "/api/v1/banks/alpha/suspend" in ROUTES
    assert "/api/v1/rounds/1/update" in ROUTES
    assert "/api/v1/audit/report" in ROUTES


# Probes answer any method and touch nothing; the snapshot below still covers them.
PROBES = {"/healthz", "/readyz", "/metrics"}


@pytest.mark.parametrize("url", ROUTES)
def test_no_write_request_of_an_auditor_changes_anything(as_auditor, url):
    before = _snapshot()
    for method in WRITES:
        response = getattr(as_auditor, method)(url, data={}, content_type="application/json")
        if url not in PROBES:
            assert response.status_code in (403, 404, 405), (method, url, response.status_code)
    assert _snapshot() == before


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/audit/events",
        "/api/v1/audit/verify",
        "/api/v1/audit/checkpoints",
        "/api/v1/audit/report?format=json&rounds=1",
    ],
)
def test_an_auditor_reads_and_exports_the_trail(as_auditor_with_history, url):
    assert as_auditor_with_history.get(url).status_code == 200


# Admin actions without ``permissions`` are offered to anyone who may *view* the list
# (Django's rule). Every action here is declared for operators only; these were the places
# that once let an auditor act.
ACTION_HOLES = {
    "members.Bank": "consortium/members/admin.py: suspend, reactivate, revoke, rotate_credential",
    "rounds.RoundPolicy": "consortium/rounds/admin.py: activate, new_version",
    "rounds.Round": "consortium/rounds/admin.py: tick (runs the scheduler)",
    "axes.AccessAttempt": "django-axes: cleanup_expired_attempts",
}


def _admins(holes: set[str]) -> list[Any]:
    return [
        pytest.param(
            model,
            model_admin,
            id=model._meta.label,
            marks=[
                pytest.mark.xfail(
                    strict=True,
                    reason=f"admin action open to view-only users: {ACTION_HOLES[model._meta.label]}",
                )
            ]
            if model._meta.label in holes
            else [],
        )
        for model, model_admin in sorted(
            admin.site._registry.items(), key=lambda item: item[0]._meta.label
        )
    ]


@pytest.mark.parametrize(("model", "model_admin"), _admins(set()))
def test_an_auditor_may_view_every_admin_page_and_no_admin_action(auditor, model, model_admin):
    auditor.is_staff = True
    auditor.save()
    request = RequestFactory().get("/admin/")
    request.user = User.objects.get(pk=auditor.pk)  # fresh permission cache
    assert model_admin.has_view_permission(request)
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)
    offered = sorted(model_admin.get_actions(request))
    assert offered == [], f"{model._meta.label} offers {offered} to an auditor"


# These two admins' actions change rows; an auditor posting them must change nothing.
@pytest.mark.parametrize(
    ("model", "model_admin"),
    [p for p in _admins(set()) if p.id in {"members.Bank", "rounds.RoundPolicy"}],
)
def test_the_admin_refuses_every_change_an_auditor_posts(
    as_auditor_with_history, model, model_admin
):
    as_auditor = as_auditor_with_history
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    assert as_auditor.get(base).status_code == 200
    before = _snapshot()
    assert as_auditor.post(base + "add/", {}).status_code == 403
    obj = model.objects.order_by("pk").first()
    if obj is not None:
        assert as_auditor.post(f"{base}{obj.pk}/change/", {}).status_code == 403
        assert as_auditor.post(f"{base}{obj.pk}/delete/", {"post": "yes"}).status_code == 403
        for action in [*model_admin.actions, "delete_selected"]:
            name = action if isinstance(action, str) else action.__name__
            as_auditor.post(
                base, {"action": name, "_selected_action": [obj.pk], "index": 0, "post": "yes"}
            )
    assert _snapshot() == before


def test_banks_and_strangers_cannot_read_the_trail(client, round_history):
    alpha = round_history.banks[0]
    for url in ("/api/v1/audit/events", "/api/v1/audit/report", "/api/v1/audit/verify"):
        assert client.get(url, **alpha.auth()).status_code == 403
        assert client.get(url).status_code in (401, 403)


def test_the_auditors_group_holds_exactly_the_view_permissions(db):
    group = Group.objects.get(name=AUDITORS_GROUP)
    codenames = set(group.permissions.values_list("codename", flat=True))
    assert codenames and all(c.startswith("view_") for c in codenames)
    for label in (
        "audit.view_auditevent",
        "audit.view_checkpoint",
        "members.view_bank",
        "rounds.view_round",
        "rounds.view_submission",
        "auth.view_user",
    ):
        app, codename = label.split(".")
        assert group.permissions.filter(content_type__app_label=app, codename=codename).exists()
    assert not group.permissions.filter(content_type__app_label="sessions").exists()


def test_a_write_permission_given_to_auditors_by_hand_is_taken_back_at_the_next_migrate(db):
    group = Group.objects.get(name=AUDITORS_GROUP)
    group.permissions.add(Permission.objects.get(codename="change_bank"))
    call_command("migrate", verbosity=0)
    assert not group.permissions.filter(codename="change_bank").exists()


def test_create_auditor_makes_a_staff_account_with_only_view_rights(db, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("a-long-auditor-password\n")
    call_command("create_auditor", "reggie", "--password-file", str(secret))
    user = User.objects.get(username="reggie")
    assert user.is_staff and not user.is_superuser
    assert user.check_password("a-long-auditor-password")
    assert list(user.groups.values_list("name", flat=True)) == [AUDITORS_GROUP]
    assert user.has_perm("members.view_bank") and not user.has_perm("members.change_bank")


def test_create_auditor_refuses_to_turn_an_operator_into_an_auditor(operator, tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("a-long-auditor-password")
    with pytest.raises(CommandError, match="is an operator"):
        call_command("create_auditor", operator.username, "--password-file", str(secret))
    assert not operator.groups.filter(name=AUDITORS_GROUP).exists()

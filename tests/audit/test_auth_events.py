"""Sign-ins and every change of who may do what land in the trail; failed sign-ins do not."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User

from audit.context import acting_as
from audit.models import AuditEvent
from consortium.api.models import SignInFailure

pytestmark = pytest.mark.django_db


def _last(action: str) -> AuditEvent:
    event = AuditEvent.objects.filter(action=action).last()
    assert event is not None, f"no {action} event"
    return event


def test_an_admin_sign_in_is_recorded_and_a_failed_one_stays_out_of_the_chain(client, operator):
    operator.is_staff = True
    operator.save()
    before = AuditEvent.objects.count()
    client.post("/admin/login/", {"username": "olivia", "password": "wrong-password"})
    # Anyone can fail a sign-in: such rows would let them grow the chain without bound.
    assert AuditEvent.objects.count() == before
    assert not AuditEvent.objects.filter(action="auth.sign_in_failed").exists()
    failed = SignInFailure.objects.get()
    assert (failed.username, failed.source, failed.count) == ("olivia", "127.0.0.1", 1)
    assert "wrong-password" not in str(vars(failed))
    client.post("/admin/login/", {"username": "olivia", "password": "operator-password-1"})
    signed_in = _last("auth.signed_in")
    assert signed_in.actor == "user:olivia" and signed_in.object_id == str(operator.pk)


def test_group_membership_changes_are_recorded_both_ways(operator):
    auditors = Group.objects.get(name="auditors")
    with acting_as("user:root"):
        operator.groups.add(auditors)
    added = _last("auth.user_groups_changed")
    assert (added.actor, added.data) == ("user:root", {"user": "olivia", "added": ["auditors"]})
    auditors.user_set.remove(operator)
    removed = _last("auth.user_groups_changed")
    assert removed.data == {"group": "auditors", "removed": ["olivia"]}
    operator.groups.clear()
    cleared = _last("auth.user_groups_changed")
    assert cleared.data == {"user": "olivia", "removed": ["operators"]}


def test_permission_changes_are_recorded(operator):
    change_bank = Permission.objects.get(codename="change_bank")
    operator.user_permissions.add(change_bank)
    assert _last("auth.user_permissions_changed").data == {
        "user": "olivia",
        "added": ["members.change_bank"],
    }
    group = Group.objects.create(name="helpers")
    group.permissions.add(change_bank)
    assert _last("auth.group_permissions_changed").data == {
        "group": "helpers",
        "added": ["members.change_bank"],
    }


def test_staff_and_superuser_flags_are_recorded_but_a_sign_in_time_is_not(operator):
    before = AuditEvent.objects.count()
    operator.last_name = "Operator"
    operator.save()
    assert AuditEvent.objects.count() == before
    operator.is_superuser = True
    operator.save()
    event = _last("auth.user_flags_changed")
    assert event.data == {"username": "olivia", "changed": {"is_superuser": [False, True]}}


def test_a_group_change_made_in_the_admin_names_the_admin_user(client, db):
    root = User.objects.create_superuser("root", password="root-password-123")
    target = User.objects.create_user("sam", password="sam-password-1234")
    client.force_login(root)
    operators = Group.objects.get_or_create(name="operators")[0]
    response = client.post(
        f"/admin/auth/user/{target.pk}/change/",
        {
            "username": "sam",
            "is_active": "on",
            "is_staff": "on",
            "groups": [operators.pk],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "initial-date_joined_0": "2026-01-01",
            "initial-date_joined_1": "00:00:00",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    groups = _last("auth.user_groups_changed")
    assert (groups.actor, groups.data["added"]) == ("user:root", ["operators"])
    flags = _last("auth.user_flags_changed")
    assert flags.actor == "user:root" and flags.data["changed"] == {"is_staff": [False, True]}

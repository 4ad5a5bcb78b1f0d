"""A rotated API credential: old and new both work until the node switches or a deadline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from consortium.members.models import Bank, BankStatus
from consortium.members.services import bank_rotate_credential, bank_set_status

pytestmark = pytest.mark.django_db

ME = "/api/v1/banks/me"


def _get(client: Client, credential: str) -> tuple[int, str]:
    response = client.get(ME, HTTP_AUTHORIZATION=f"Bearer {credential}")
    return response.status_code, response.json().get("message", "")


def _later(hours: float) -> Any:
    moment = timezone.now() + timedelta(hours=hours)
    return mock.patch("consortium.api.auth.timezone.now", return_value=moment)


def test_before_the_switch_the_old_and_the_new_credential_both_work(client, bank_alpha):
    new = bank_rotate_credential(bank=bank_alpha.bank, actor="user:olga")
    assert _get(client, bank_alpha.credential)[0] == 200
    assert _get(client, bank_alpha.credential)[0] == 200  # still: the node has not switched
    event = AuditEvent.objects.get(action="bank.credential_rotated")
    bank = Bank.objects.get(slug="alpha")
    assert event.data["previous_prefix"] == bank.previous_credential_prefix
    until = bank.previous_credential_expires_at
    assert until is not None and event.data["previous_valid_until"] == until.isoformat()
    assert _get(client, new)[0] == 200


def test_after_the_node_first_uses_the_new_credential_the_old_one_is_refused(client, bank_alpha):
    new = bank_rotate_credential(bank=bank_alpha.bank, actor="user:olga")
    assert _get(client, new)[0] == 200
    status, message = _get(client, bank_alpha.credential)
    assert status == 401 and "invalid bank credential" in message
    switched = AuditEvent.objects.get(action="bank.credential_switched")
    assert switched.actor == "bank:alpha"
    assert _get(client, new)[0] == 200
    assert AuditEvent.objects.filter(action="bank.credential_switched").count() == 1


def test_after_the_deadline_the_old_credential_is_refused_with_a_reason(
    client, bank_alpha, settings
):
    settings.CREDENTIAL_GRACE = timedelta(hours=24)
    new = bank_rotate_credential(bank=bank_alpha.bank, actor="user:olga")
    with _later(23.9):
        assert _get(client, bank_alpha.credential)[0] == 200
    with _later(24.1):
        status, message = _get(client, bank_alpha.credential)
        assert status == 401
        assert "replaced" in message and "grace period ended" in message
        assert _get(client, new)[0] == 200


def test_the_grace_period_comes_from_the_setting(bank_alpha, settings):
    settings.CREDENTIAL_GRACE = timedelta(hours=2)
    before = timezone.now()
    bank_rotate_credential(bank=bank_alpha.bank, actor="user:olga")
    until = Bank.objects.get(slug="alpha").previous_credential_expires_at
    assert until is not None
    assert before + timedelta(hours=2) <= until <= timezone.now() + timedelta(hours=2)


def test_a_second_rotation_drops_the_credential_rotated_away_first(client, bank_alpha):
    second = bank_rotate_credential(bank=bank_alpha.bank, actor="user:olga")
    third = bank_rotate_credential(bank=bank_alpha.bank, actor="user:olga")
    assert _get(client, bank_alpha.credential)[0] == 401
    assert _get(client, second)[0] == 200 and _get(client, third)[0] == 200


def test_the_old_credential_of_a_suspended_bank_is_refused_like_the_new_one(client, bank_alpha):
    new = bank_rotate_credential(bank=bank_alpha.bank, actor="user:olga")
    bank_set_status(
        bank=bank_alpha.bank, status=BankStatus.SUSPENDED, actor="user:olga", reason="test"
    )
    for credential in (bank_alpha.credential, new):
        status, message = _get(client, credential)
        assert status == 401 and "suspended" in message


def test_the_api_rotation_answers_until_when_the_old_credential_works(client, bank_alpha, operator):
    client.force_login(operator)
    answer = client.post("/api/v1/banks/alpha/rotate-credential")
    assert answer.status_code == 200
    body = answer.json()
    bank = Bank.objects.get(slug="alpha")
    assert bank.previous_credential_expires_at is not None
    assert body["previous_valid_until"] == bank.previous_credential_expires_at.isoformat()
    client.logout()
    assert _get(client, bank_alpha.credential)[0] == 200
    assert _get(client, body["credential"])[0] == 200
    assert _get(client, bank_alpha.credential)[0] == 401

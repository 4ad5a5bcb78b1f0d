"""Cached bank credentials: reads stop asking the database, within a stated bound.

``CONSORTIUM_AUTH_CACHE_SECONDS`` (consortium/api/auth_cache.py): a credential that
authenticated a read is trusted for that long by the worker; a suspension or a replaced
credential reaches reads within it, and writes are checked against the database at once.
The cache's clock is a fake one here: the bound is tested without sleeping.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from consortium.api import auth
from consortium.api.auth_cache import BankCache
from consortium.members.models import BankStatus
from consortium.members.services import bank_rotate_credential, bank_set_status

pytestmark = pytest.mark.django_db

TTL = 5
ME = "/api/v1/banks/me"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Clock:
    settings.AUTH_CACHE_SECONDS = TTL
    fake = Clock()
    monkeypatch.setattr(auth, "bank_cache", BankCache(clock=fake))
    return fake


def _get(client: Client, credential: str, path: str = ME) -> tuple[int, str]:
    response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {credential}")
    body = response.json() if response.content else {}
    return response.status_code, body.get("message", "")


def test_a_suspended_bank_is_refused_on_reads_once_the_cache_ttl_has_passed(
    client, bank_alpha, clock
):
    assert _get(client, bank_alpha.credential)[0] == 200
    bank_set_status(bank=bank_alpha.bank, status=BankStatus.SUSPENDED, actor="user:olga")
    clock.now += TTL - 0.1
    assert _get(client, bank_alpha.credential)[0] == 200  # the stated staleness, no more
    clock.now += 0.1
    status, message = _get(client, bank_alpha.credential)
    assert status in (401, 403) and "bank alpha is suspended" in message


def test_a_suspended_bank_is_refused_on_writes_at_once_even_while_its_reads_are_cached(
    client, bank_alpha, clock
):
    assert _get(client, bank_alpha.credential)[0] == 200
    bank_set_status(bank=bank_alpha.bank, status=BankStatus.SUSPENDED, actor="user:olga")
    response = client.put(
        "/api/v1/banks/me/signing-key",
        data={"public_key": "AAAA"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {bank_alpha.credential}",
    )
    assert response.status_code in (401, 403)
    assert "bank alpha is suspended" in response.json()["message"]


def test_a_credential_replaced_without_grace_is_refused_on_reads_once_the_ttl_has_passed(
    client, bank_alpha, clock
):
    assert _get(client, bank_alpha.credential)[0] == 200
    new = bank_rotate_credential(bank=bank_alpha.bank, actor="user:olga", grace=timedelta(0))
    clock.now += TTL - 0.1
    assert _get(client, bank_alpha.credential)[0] == 200  # the stated staleness, no more
    clock.now += 0.1
    status, message = _get(client, bank_alpha.credential)
    assert status == 401 and "invalid bank credential" in message
    assert _get(client, new)[0] == 200


def test_a_replaced_credential_served_from_the_cache_still_ends_with_its_grace_period(
    client, bank_alpha, clock
):
    bank_rotate_credential(bank=bank_alpha.bank, actor="user:olga", grace=timedelta(hours=1))
    assert _get(client, bank_alpha.credential)[0] == 200  # cached as the previous credential
    later = timezone.now() + timedelta(hours=2)
    with mock.patch("consortium.api.auth.timezone.now", return_value=later):
        status, message = _get(client, bank_alpha.credential)
    assert status == 401 and "grace period ended" in message


def test_a_cached_credential_does_not_let_in_another_secret_with_the_same_prefix(
    client, bank_alpha, clock
):
    assert _get(client, bank_alpha.credential)[0] == 200
    forged = bank_alpha.credential[:-4] + (
        "AAAA" if bank_alpha.credential[-4:] != "AAAA" else "BBBB"
    )
    status, message = _get(client, forged)
    assert status == 401 and "invalid bank credential" in message


def test_once_both_caches_are_warm_a_status_poll_runs_no_database_query(
    client, open_round, bank_alpha, clock, settings
):
    settings.STATUS_CACHE_SECONDS = 60  # no refresh falls due during the test
    poll = "/api/v1/rounds/current"
    assert _get(client, bank_alpha.credential, poll)[0] == 200
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert _get(client, bank_alpha.credential, poll)[0] == 200
    assert [q["sql"] for q in queries.captured_queries] == []


def test_without_the_cache_every_read_asks_the_database(client, bank_alpha, settings):
    settings.AUTH_CACHE_SECONDS = 0
    assert _get(client, bank_alpha.credential)[0] == 200
    bank_set_status(bank=bank_alpha.bank, status=BankStatus.SUSPENDED, actor="user:olga")
    assert _get(client, bank_alpha.credential)[0] in (401, 403)

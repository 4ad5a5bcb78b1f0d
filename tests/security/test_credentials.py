"""Bank credentials: stored only as a hash, compared in constant time, dead the moment
they are rotated or revoked."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.core import serializers
from django.test import Client

from consortium.api import auth
from consortium.members import credentials
from consortium.members.models import Bank
from tests.conftest import Persona

pytestmark = pytest.mark.django_db


def test_a_credential_is_stored_only_as_its_sha256(bank_alpha: Persona):
    bank = Bank.objects.get(pk=bank_alpha.bank.pk)
    secret = bank_alpha.credential.split("_", 2)[2]
    assert bank.credential_hash == hashlib.sha256(bank_alpha.credential.encode()).hexdigest()
    # Nothing the database holds about any model carries the credential or its secret part.
    from django.apps import apps

    dump = serializers.serialize(
        "json", [o for m in apps.get_models() for o in m._default_manager.all()]
    )
    assert bank_alpha.credential not in dump and secret not in dump


def test_a_credential_has_enough_entropy_to_make_a_fast_hash_right():
    credential, prefix, _ = credentials.credential_new()
    secret = credential.split("_", 2)[2]
    # token_urlsafe(32): 32 random bytes = 256 bits; brute force of a SHA-256 is hopeless.
    assert len(secret) >= 43 and len(prefix) == 12


def _spy() -> Any:
    return mock.patch.object(auth.hmac, "compare_digest", side_effect=hmac.compare_digest)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.credential[:-4] + "AAAA",  # known prefix, wrong secret
        lambda p: "cbk_000000000000_" + p.credential.split("_", 2)[2],  # unknown prefix
    ],
    ids=["known-prefix-wrong-secret", "unknown-prefix"],
)
def test_every_credential_check_runs_one_constant_time_comparison(client: Client, bank_alpha, make):
    with _spy() as spy:
        response = client.get("/api/v1/banks/me", HTTP_AUTHORIZATION=f"Bearer {make(bank_alpha)}")
    assert response.status_code == 401
    assert response.json()["message"] == "invalid bank credential"  # the same for both
    # An unknown prefix still pays for a comparison, so timing does not reveal which
    # prefixes exist; and the comparison is hmac.compare_digest, not ==.
    assert spy.call_count == 1
    stored, presented = spy.call_args.args
    assert len(stored) == len(presented) == 64


def test_a_valid_credential_is_also_checked_with_compare_digest(client: Client, bank_alpha):
    with _spy() as spy:
        assert client.get("/api/v1/banks/me", **bank_alpha.auth()).status_code == 200
    assert spy.call_count == 1


def test_a_credential_rotated_without_grace_fails_on_the_very_next_request(
    client: Client, bank_alpha, operator
):
    from consortium.members.services import bank_rotate_credential

    assert client.get("/api/v1/banks/me", **bank_alpha.auth()).status_code == 200
    # No grace period: the old credential may have leaked.
    new = bank_rotate_credential(bank=bank_alpha.bank, actor="test", grace=timedelta(0))
    assert client.get("/api/v1/banks/me", **bank_alpha.auth()).status_code == 401
    assert client.get("/api/v1/banks/me", HTTP_AUTHORIZATION=f"Bearer {new}").status_code == 200


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Bearer cbk_", "Bearer cbk__", "Bearer xyz_a_b", "Bearer \x00\xff"],
)
def test_malformed_credentials_are_a_401_with_a_message(client: Client, db, header):
    response = client.get("/api/v1/banks/me", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["message"]

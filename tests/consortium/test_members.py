"""Member banks: onboarding, credentials, status and signing keys."""

from __future__ import annotations

from datetime import timedelta

import pytest

from consortium.members.models import Bank
from consortium.members.services import bank_rotate_credential
from he.signing import public_key_b64, signing_key_new

pytestmark = pytest.mark.django_db


def test_an_operator_onboards_a_bank_and_sees_the_credential_once(client, operator):
    client.force_login(operator)
    response = client.post("/api/v1/banks/", {"slug": "epsilon"}, content_type="application/json")
    assert response.status_code == 201
    credential = response.json()["credential"]
    bank = Bank.objects.get(slug="epsilon")
    assert credential not in (bank.credential_hash, bank.credential_prefix)
    listing = client.get("/api/v1/banks/").content.decode()
    assert credential not in listing and "credential_hash" not in listing
    me = client.get("/api/v1/banks/me", HTTP_AUTHORIZATION=f"Bearer {credential}")
    assert me.status_code == 200 and me.json()["slug"] == "epsilon"


def test_a_duplicate_slug_is_refused_with_409(client, operator, bank_alpha):
    client.force_login(operator)
    response = client.post("/api/v1/banks/", {"slug": "alpha"}, content_type="application/json")
    assert response.status_code == 409


def test_a_credential_rotated_without_grace_stops_the_old_one_at_once(client, bank_alpha):
    new = bank_rotate_credential(bank=bank_alpha.bank, actor="test", grace=timedelta(0))
    assert client.get("/api/v1/banks/me", **bank_alpha.auth()).status_code == 401
    assert client.get("/api/v1/banks/me", HTTP_AUTHORIZATION=f"Bearer {new}").status_code == 200


def test_a_bank_registers_its_first_signing_key_but_cannot_replace_it(client):
    from tests.conftest import make_bank

    persona = make_bank("zeta", with_key=False)
    first = public_key_b64(signing_key_new())
    url = "/api/v1/banks/me/signing-key"
    ok = client.put(url, {"public_key": first}, content_type="application/json", **persona.auth())
    assert ok.status_code == 200 and ok.json()["signing_public_key"] == first
    again = client.put(
        url,
        {"public_key": public_key_b64(signing_key_new())},
        content_type="application/json",
        **persona.auth(),
    )
    assert again.status_code == 409
    assert "operator" in again.json()["message"]


def test_a_malformed_signing_key_is_refused_with_a_message(client):
    from tests.conftest import make_bank

    persona = make_bank("eta", with_key=False)
    response = client.put(
        "/api/v1/banks/me/signing-key",
        {"public_key": "abc"},
        content_type="application/json",
        **persona.auth(),
    )
    assert response.status_code == 400
    assert "Ed25519" in response.json()["message"]


def test_revocation_cannot_be_undone(client, operator, bank_alpha):
    client.force_login(operator)
    assert (
        client.post("/api/v1/banks/alpha/revoke", {}, content_type="application/json").status_code
        == 200
    )
    again = client.post("/api/v1/banks/alpha/reactivate", {}, content_type="application/json")
    assert again.status_code == 409
    assert "cannot be undone" in again.json()["message"]


def test_an_operator_rotates_a_signing_key_and_old_signatures_stay_verifiable(
    client, ckks, open_round, bank_alpha, operator
):
    import hashlib

    from consortium.rounds.models import Submission
    from he.signing import update_message, verify
    from tests.conftest import encrypted_update, upload_headers

    body, _ = encrypted_update(ckks, open_round.vector_length)
    headers = upload_headers(bank_alpha, open_round.number, body)
    assert (
        client.put(
            f"/api/v1/rounds/{open_round.number}/update",
            data=body,
            content_type="application/octet-stream",
            **headers,
        ).status_code
        == 201
    )
    client.force_login(operator)
    new_key = signing_key_new()
    rotated = client.put(
        "/api/v1/banks/alpha/signing-key",
        {"public_key": public_key_b64(new_key)},
        content_type="application/json",
    )
    assert rotated.status_code == 200
    assert rotated.json()["signing_public_key"] == public_key_b64(new_key)
    sub = Submission.objects.get(round=open_round, bank=bank_alpha.bank)
    digest = hashlib.sha256(body).hexdigest()
    message = update_message(open_round.number, "alpha", digest)
    assert verify(sub.signing_public_key, message, sub.signature)
    assert not verify(public_key_b64(new_key), message, sub.signature)


def test_a_bank_cannot_rotate_its_key_through_the_operator_endpoint(client, bank_alpha):
    response = client.put(
        "/api/v1/banks/alpha/signing-key",
        {"public_key": public_key_b64(signing_key_new())},
        content_type="application/json",
        **bank_alpha.auth(),
    )
    assert response.status_code == 403


def test_operators_keep_the_admin_actions_that_auditors_are_refused(operator, auditor):
    from django.contrib import admin
    from django.contrib.auth.models import User
    from django.test import RequestFactory

    bank_admin = admin.site._registry[Bank]
    for user, expected in [(operator, True), (auditor, False)]:
        user.is_staff = True
        user.save()
        request = RequestFactory().get("/admin/")
        request.user = User.objects.get(pk=user.pk)
        assert ("suspend" in bank_admin.get_actions(request)) is expected

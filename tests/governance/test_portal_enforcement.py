"""Once a genesis is in force the portal enforces the roster, whatever the operator edits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from portal_helpers import Founder, approve, basic, found, onboard, post, propose
from roster_helpers import new_bank

from audit.models import AuditEvent
from consortium.api.errors import Conflict
from consortium.governance.selectors import policy_digest
from consortium.members.models import Bank, BankStatus
from consortium.rounds.models import KeyEpoch, RoundPolicy, RoundState, Submission
from consortium.rounds.selectors import round_in_flight
from consortium.rounds.services import (
    key_epoch_register,
    policy_create,
    policy_new_version,
    round_close_due,
    round_open_next,
)
from he.keys import generate_secret_context, public_context_bytes
from he.signing import sign, update_message
from tests.conftest import PARAMS, encrypted_update, upload_headers

pytestmark = pytest.mark.django_db

OPERATOR = basic("olivia", "operator-password-1")


@pytest.fixture
def governed(
    client: Any, ckks: Any, epoch: Any, policy: Any, founders: dict[str, Founder], operator: Any
) -> dict[str, Founder]:
    """Epoch and policy registered before the genesis, which puts exactly them in force."""
    approved = ((policy.name, policy.version, policy_digest(policy)),)
    found(client, founders, epochs=(ckks.fingerprint,), policies=approved)
    return founders


@pytest.fixture
def governed_round(governed: dict[str, Founder]) -> Any:
    round_open_next(timezone.now())
    rnd = round_in_flight()
    assert rnd is not None
    return rnd


def _put(client: Any, rnd: Any, body: bytes, headers: dict[str, Any]) -> Any:
    return client.put(
        f"/api/v1/rounds/{rnd.number}/update",
        data=body,
        content_type="application/octet-stream",
        **headers,
    )


def test_the_operator_cannot_swap_a_members_signing_key(client, governed):
    before = Bank.objects.get(slug="alpha").signing_public_key
    attacker = new_bank("alpha").public
    response = client.put(
        "/api/v1/banks/alpha/signing-key",
        data={"public_key": attacker},
        content_type="application/json",
        **OPERATOR,
    )
    assert response.status_code == 409
    assert "propose a roster change" in response.json()["message"]
    assert Bank.objects.get(slug="alpha").signing_public_key == before
    # The refusal rolled the change back, yet it is in the trail, with the key it refused.
    refused = AuditEvent.objects.get(action="bank.signing_key_refused")
    assert refused.actor == "user:olivia" and refused.data["public_key"] == attacker
    assert "propose a roster change" in refused.data["reason"]


def test_the_operator_cannot_change_a_members_status_but_can_a_non_members_account(
    client, governed
):
    response = post(client, "/api/v1/banks/beta/suspend", {}, OPERATOR)
    assert response.status_code == 409
    assert "signed roster" in response.json()["message"]
    assert Bank.objects.get(slug="beta").status == BankStatus.ACTIVE
    refused = AuditEvent.objects.get(action="bank.status_refused")
    assert refused.data["to"] == "suspended" and refused.object_id == str(
        Bank.objects.get(slug="beta").pk
    )
    onboard("omega")  # an API account the roster has not admitted
    assert post(client, "/api/v1/banks/omega/suspend", {}, OPERATOR).status_code == 200


def test_an_unapproved_policy_cannot_be_activated_until_the_banks_approve_it(
    client, governed, policy
):
    no_dp = policy_create(name=policy.name, actor="test", min_banks=3, model_spec=policy.model_spec)
    response = post(client, f"/api/v1/policies/{no_dp.pk}/activate", {}, OPERATOR)
    assert response.status_code == 409
    message = response.json()["message"]
    assert "not approved" in message and policy_digest(no_dp) in message
    assert RoundPolicy.objects.get(active=True).pk == policy.pk
    refused = AuditEvent.objects.get(action="policy.activation_refused")
    assert refused.data["version"] == no_dp.version and refused.data["reason"] == message
    change = {
        "kind": "approve_policy",
        "policy": {"name": no_dp.name, "version": no_dp.version, "digest": policy_digest(no_dp)},
    }
    assert propose(client, {"change": change}).status_code == 201
    for bank_id in ("alpha", "beta", "gamma"):
        approve(client, governed[bank_id])
    response = post(client, f"/api/v1/policies/{no_dp.pk}/activate", {}, OPERATOR)
    assert response.status_code == 200
    assert RoundPolicy.objects.get(active=True).pk == no_dp.pk


def test_a_key_epoch_not_in_force_is_refused_with_the_change_to_propose(governed):
    other = public_context_bytes(generate_secret_context(PARAMS))
    with pytest.raises(Conflict, match="register_key_epoch"):
        key_epoch_register(public_context=other, ckks_params=PARAMS.to_dict(), actor="user:o")
    assert KeyEpoch.objects.count() == 1


def test_a_key_epoch_refused_through_the_api_is_in_the_audit_trail(client, governed):
    from tests.conftest import b64

    other = public_context_bytes(generate_secret_context(PARAMS))
    response = post(
        client,
        "/api/v1/key-epochs/",
        {"public_context_b64": b64(other), "ckks_params": PARAMS.to_dict()},
        OPERATOR,
    )
    assert response.status_code == 409
    refused = AuditEvent.objects.get(action="key_epoch.refused")
    assert refused.actor == "user:olivia" and "register_key_epoch" in refused.data["reason"]
    assert KeyEpoch.objects.count() == 1


def test_a_refusal_in_the_web_portal_is_audited_like_one_through_the_api(
    client, governed, policy, operator
):
    no_dp = policy_create(name=policy.name, actor="test", min_banks=3, model_spec=policy.model_spec)
    client.force_login(operator)
    response = client.post(f"/policies/{no_dp.pk}/activate")
    assert response.status_code == 302
    assert RoundPolicy.objects.get(active=True).pk == policy.pk
    refused = AuditEvent.objects.get(action="policy.activation_refused")
    assert refused.actor == "user:olivia" and "not approved" in refused.data["reason"]


def test_no_round_opens_under_a_policy_the_roster_does_not_approve(governed, policy):
    RoundPolicy.objects.filter(pk=policy.pk).update(active=False)
    rogue = policy_create(name="rogue", actor="test", min_banks=3, model_spec=policy.model_spec)
    RoundPolicy.objects.filter(pk=rogue.pk).update(active=True)  # straight in the database
    assert round_open_next(timezone.now()) == []
    assert round_in_flight() is None


def test_an_upload_signed_with_a_key_that_is_not_the_roster_key_is_refused(
    client, ckks, governed, governed_round
):
    alpha = governed["alpha"]
    thief = new_bank("alpha")
    # The operator rewrites alpha's key in its own database, then uploads in alpha's name.
    Bank.objects.filter(slug="alpha").update(signing_public_key=thief.public)
    body, _ = encrypted_update(ckks, governed_round.vector_length)
    forged = upload_headers(alpha.persona, governed_round.number, body)
    forged["HTTP_X_UPDATE_SIGNATURE"] = sign(
        thief.key, update_message(governed_round.number, "alpha", forged["HTTP_X_UPDATE_DIGEST"])
    )
    response = _put(client, governed_round, body, forged)
    assert response.status_code == 403
    assert governed_round.submissions.count() == 0
    # Alpha's own upload under its roster key still goes through, and records that key.
    honest = upload_headers(alpha.persona, governed_round.number, body)
    assert _put(client, governed_round, body, honest).status_code == 201
    assert Submission.objects.get().signing_public_key == alpha.keys.public


def test_a_bank_that_is_not_a_roster_member_cannot_upload(client, ckks, governed, governed_round):
    omega = onboard("omega")
    body, _ = encrypted_update(ckks, governed_round.vector_length)
    response = _put(client, governed_round, body, upload_headers(omega.persona, 1, body))
    assert response.status_code == 403
    assert "not an active member" in response.json()["message"]
    assert AuditEvent.objects.filter(action="update.rejected").count() == 1


def test_the_scheduler_waits_only_for_roster_members_and_applies_the_roster_floor(
    client, ckks, governed, governed_round
):
    onboard("omega")  # active API account, not a member: nobody waits for it
    for seed, bank_id in enumerate(("alpha", "beta")):
        body, _ = encrypted_update(ckks, governed_round.vector_length, seed=seed)
        persona = governed[bank_id].persona
        assert (
            _put(client, governed_round, body, upload_headers(persona, 1, body)).status_code == 201
        )
    # The policy allows 2 banks; the charter's floor of 3 wins at the deadline.
    round_close_due(governed_round.deadline_at + timedelta(seconds=1))
    governed_round.refresh_from_db()
    assert governed_round.state == RoundState.FAILED
    assert "of the 3 required" in governed_round.failure_reason


def test_every_roster_member_submitting_closes_the_round_early(
    client, ckks, governed, governed_round
):
    onboard("omega")
    for seed, founder in enumerate(governed.values()):
        body, _ = encrypted_update(ckks, governed_round.vector_length, seed=seed)
        headers = upload_headers(founder.persona, 1, body)
        assert _put(client, governed_round, body, headers).status_code == 201
    assert round_close_due(timezone.now()) == [f"round {governed_round.number} aggregating"]


def test_the_portal_page_shows_why_an_unapproved_policy_is_not_activated(
    client, governed, policy, operator
):
    rogue = policy_create(name="rogue", actor="test", min_banks=3, model_spec=policy.model_spec)
    client.force_login(operator)
    response = client.post(f"/policies/{rogue.pk}/activate", follow=True)
    assert response.status_code == 200
    assert b"not approved" in response.content
    assert RoundPolicy.objects.get(active=True).pk == policy.pk


def test_a_new_version_of_the_active_policy_starts_inactive_under_the_roster(governed, policy):
    new = policy_new_version(base=policy, actor="test", learning_rate=0.01)
    assert new.active is False
    assert RoundPolicy.objects.get(active=True).pk == policy.pk

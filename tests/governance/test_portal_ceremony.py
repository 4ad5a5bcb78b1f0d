"""The portal stores and relays the roster: founding, approvals, and what it refuses to store."""

from __future__ import annotations

from typing import Any

import pytest
from portal_helpers import (
    Founder,
    approve,
    basic,
    charter,
    onboard,
    pending_version,
    post,
    propose,
)
from roster_helpers import NOW, new_bank

from audit.models import AuditEvent
from consortium.governance.models import RosterSignature, RosterVersion, VersionStatus
from consortium.governance.selectors import roster_state
from consortium.members.models import Bank, BankStatus
from governance import genesis_version, sign_version

pytestmark = pytest.mark.django_db

OPERATOR = basic("olivia", "operator-password-1")


def _admit(client: Any, bank_id: str = "epsilon") -> Founder:
    newcomer = onboard(bank_id)
    change = {"kind": "admit_bank", "member": newcomer.keys.member().to_dict()}
    assert propose(client, {"change": change}).status_code == 201
    return newcomer


def test_four_founders_sign_the_genesis_through_the_api_and_it_takes_effect(
    client, founders, operator
):
    draft = genesis_version(charter(founders), NOW)
    assert propose(client, {"genesis": draft.to_dict()}).status_code == 201
    for i, founder in enumerate(founders.values()):
        assert roster_state() is None, f"in force after only {i} of 4 founders signed"
        response = approve(client, founder)
        assert response.status_code == 200, response.json()
    state = roster_state()
    assert state is not None and state.version == 0
    assert {m.bank_id for m in state.active_members()} == set(founders)
    roster = client.get("/api/v1/roster", **founders["alpha"].auth()).json()
    assert roster["head"]["number"] == 0 and roster["pending"] == []
    assert roster["versions"][0]["signers"] == sorted(founders)
    assert AuditEvent.objects.filter(action="roster.in_force").count() == 1


def test_the_pending_genesis_shows_who_has_signed_and_who_is_missing(client, founders, operator):
    assert propose(client, {"genesis": genesis_version(charter(founders), NOW).to_dict()})
    approve(client, founders["alpha"])
    pending = client.get("/api/v1/roster", **OPERATOR).json()["pending"][0]
    assert pending["approvals"]["signed"] == ["alpha"]
    assert sorted(pending["approvals"]["missing"]) == ["beta", "delta", "gamma"]
    assert "needs all 4 founders" in pending["summary"]


def test_an_admission_takes_effect_with_three_of_four_signatures_and_the_newcomers_own(
    client, founded
):
    newcomer = _admit(client)
    assert approve(client, newcomer).status_code == 200  # proof of possession
    approve(client, founded["alpha"])
    approve(client, founded["beta"])
    state = roster_state()
    assert state is not None and state.member("epsilon") is None, "in force with 2 of 3"
    approve(client, founded["gamma"])
    state = roster_state()
    assert state is not None and state.version == 1
    assert state.signing_key_of("epsilon") == newcomer.keys.public
    assert RosterVersion.objects.get(number=1).status == VersionStatus.IN_FORCE


def test_an_admission_stays_pending_without_the_newcomers_own_signature_and_can_be_withdrawn(
    client, founded
):
    stranger = new_bank("zeta")  # no portal account: it cannot send its proof of possession
    change = {"kind": "admit_bank", "member": stranger.member().to_dict()}
    assert propose(client, {"change": change}).status_code == 201
    for bank_id in ("alpha", "beta", "gamma", "delta"):
        assert approve(client, founded[bank_id]).status_code == 200
    pending = client.get("/api/v1/roster", **OPERATOR).json()["pending"][0]["approvals"]
    assert pending["proof_of"] == "zeta" and pending["proof_ok"] is False
    state = roster_state()
    assert state is not None and state.member("zeta") is None
    assert not Bank.objects.filter(slug="zeta").exists()
    response = post(client, "/api/v1/roster/versions/1/withdraw", {}, OPERATOR)
    assert response.status_code == 200
    assert RosterVersion.objects.get(number=1).status == VersionStatus.WITHDRAWN
    # The number is free again for the next proposal.
    assert (
        propose(client, {"change": {"kind": "change_min_banks", "min_banks": 4}}).status_code == 201
    )


def test_a_suspension_in_force_suspends_the_portal_account_too(client, founded):
    change = {"kind": "suspend_bank", "bank_id": "delta", "reason": "audit finding"}
    assert propose(client, {"change": change}).status_code == 201
    for bank_id in ("alpha", "beta", "gamma"):
        assert approve(client, founded[bank_id]).status_code == 200
    assert Bank.objects.get(slug="delta").status == BankStatus.SUSPENDED
    assert AuditEvent.objects.filter(action="bank.roster_synced").exists()


def test_a_forged_signature_is_refused_audited_and_not_stored(client, founded):
    _admit(client)
    forger = new_bank("alpha")  # same id, a key that is not alpha's roster key
    version = pending_version(client, OPERATOR)
    forged = sign_version(version, "alpha", forger.key)
    path = f"/api/v1/roster/versions/{version.number}/signatures"
    response = post(client, path, {"signature": forged}, founded["alpha"].auth())
    assert response.status_code == 403
    assert "does not verify" in response.json()["message"]
    assert not RosterSignature.objects.filter(version__number=1).exists()
    assert AuditEvent.objects.filter(action="roster.signature_refused").count() == 1


def test_a_signature_by_a_suspended_member_is_refused_and_not_stored(client, founded):
    change = {"kind": "suspend_bank", "bank_id": "delta", "reason": ""}
    propose(client, {"change": change})
    for bank_id in ("alpha", "beta", "gamma"):
        approve(client, founded[bank_id])
    # Delta's portal account is suspended with it; the operator re-enables the account
    # (the attack): delta's signature must still not count.
    Bank.objects.filter(slug="delta").update(status=BankStatus.ACTIVE)
    propose(client, {"change": {"kind": "change_min_banks", "min_banks": 4}})
    response = approve(client, founded["delta"])
    assert response.status_code == 403
    assert "suspended" in response.json()["message"]
    assert not RosterSignature.objects.filter(version__number=2).exists()


def test_a_second_proposal_while_one_is_pending_is_refused_naming_the_pending_one(client, founded):
    _admit(client)
    response = propose(client, {"change": {"kind": "change_min_banks", "min_banks": 4}})
    assert response.status_code == 409
    assert "roster version 1" in response.json()["message"]
    assert RosterVersion.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"change": {"kind": "change_min_banks", "min_banks": 2}}, "min_banks"),
        ({"change": {"kind": "suspend_bank", "bank_id": "nobody", "reason": ""}}, "nobody"),
        ({"change": {"kind": "teleport"}}, "unknown"),
        ({"change": "suspend everyone"}, "change"),
        ({"genesis": {}, "change": {}}, "exactly one"),
        ({"other": 1}, "field"),
    ],
)
def test_a_bad_proposal_is_a_4xx_naming_what_is_wrong_and_nothing_is_stored(
    client, founded, body, needle
):
    response = propose(client, body)
    assert 400 <= response.status_code < 500
    assert needle in response.json()["message"]
    assert RosterVersion.objects.count() == 1


def test_a_second_genesis_is_refused(client, founded):
    again = genesis_version(charter(founded), NOW)
    response = propose(client, {"genesis": again.to_dict()})
    assert response.status_code == 409
    assert RosterVersion.objects.count() == 1


def test_a_deeply_nested_or_duplicate_key_body_is_a_400(client, founded):
    headers = {**OPERATOR, "content_type": "application/json"}
    deep = '{"change": ' + "[" * 100000 + "]" * 100000 + "}"
    assert client.post("/api/v1/roster/proposals", data=deep, **headers).status_code == 400
    dup = '{"change": {"kind": "change_min_banks", "min_banks": 4, "min_banks": 5}}'
    response = client.post("/api/v1/roster/proposals", data=dup, **headers)
    assert response.status_code == 400
    assert "duplicate" in response.json()["message"]


def test_a_bank_cannot_sign_for_another_bank(client, founded):
    _admit(client)
    version = pending_version(client, OPERATOR)
    beta_sig = sign_version(version, "beta", founded["beta"].keys.key)
    path = f"/api/v1/roster/versions/{version.number}/signatures"
    # Alpha relays beta's valid signature under its own credential: it is checked as alpha's.
    response = post(client, path, {"signature": beta_sig}, founded["alpha"].auth())
    assert response.status_code == 403
    assert not RosterSignature.objects.filter(version__number=1).exists()


def test_roster_after_n_lists_only_newer_versions(client, founded):
    newcomer = _admit(client)
    for founder in (newcomer, founded["alpha"], founded["beta"], founded["gamma"]):
        approve(client, founder)
    newer = client.get("/api/v1/roster?after=0", **founded["alpha"].auth()).json()
    assert [v["number"] for v in newer["versions"]] == [1]
    bad = client.get("/api/v1/roster?after=soon", **founded["alpha"].auth())
    assert bad.status_code == 400


def test_a_fully_signed_genesis_relayed_by_the_operator_takes_effect_without_creating_banks(
    client, operator
):
    keys = {bank_id: new_bank(bank_id) for bank_id in ("alpha", "beta", "gamma", "delta")}
    founders = {k: Founder(v, None) for k, v in keys.items()}
    draft = genesis_version(charter(founders), NOW)
    for bank in keys.values():
        draft = bank.sign(draft)
    assert propose(client, {"genesis": draft.to_dict()}).status_code == 201
    state = roster_state()
    assert state is not None and state.version == 0
    assert not Bank.objects.exists()  # the roster decides membership, the operator onboards
    # Onboarded afterwards with some other key: the row takes the key the banks signed.
    row = onboard("alpha").persona.bank
    assert row.signing_public_key == keys["alpha"].public


def test_a_genesis_relaying_a_forged_founder_signature_is_refused_and_nothing_is_stored(
    client, founders, operator
):
    draft = genesis_version(charter(founders), NOW)
    draft = founders["alpha"].keys.sign(draft)
    forged = sign_version(draft, "beta", new_bank("beta").key)
    draft = draft.with_signature("beta", forged)
    response = propose(client, {"genesis": draft.to_dict()})
    assert response.status_code == 403
    assert "beta" in response.json()["message"]
    assert not RosterVersion.objects.exists() and not RosterSignature.objects.exists()
    assert AuditEvent.objects.filter(action="roster.proposal_refused").count() == 1


@pytest.mark.parametrize("number", [7, 10**30])
def test_signing_or_withdrawing_a_version_that_does_not_exist_is_a_404(client, founded, number):
    path = f"/api/v1/roster/versions/{number}"
    signed = post(client, f"{path}/signatures", {"signature": "AAAA"}, founded["alpha"].auth())
    assert signed.status_code == 404
    assert post(client, f"{path}/withdraw", {}, OPERATOR).status_code == 404


def test_a_version_in_force_can_be_neither_signed_again_nor_withdrawn(client, founded):
    assert post(client, "/api/v1/roster/versions/0/withdraw", {}, OPERATOR).status_code == 409
    response = post(
        client,
        "/api/v1/roster/versions/0/signatures",
        {"signature": "AAAA"},
        founded["alpha"].auth(),
    )
    assert response.status_code == 409
    assert "in_force" in response.json()["message"]

"""Signed gate verdicts: bound to their round and aggregate, counted one per bank."""

import dataclasses
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.errors import RosterError
from governance.verdict import GateVerdict, sign_verdict, verdict_decision, verify_verdict
from he.signing import public_key_b64

DIGEST = "ab" * 32


def verdict(bank: str = "alpha", decision: str = "adopt", **changes: object) -> GateVerdict:
    fields: dict[str, Any] = {
        "consortium_id": "demo",
        "round_number": 5,
        "candidate_round": 4,
        "aggregate_digest": DIGEST,
        "decision": decision,
        "candidate_auprc": 0.71,
        "current_auprc": 0.69,
        "candidate_recall": 0.5,
        "current_recall": 0.45,
        "bank_id": bank,
        "created_at": "2026-12-01T12:00:00Z",
    }
    return GateVerdict(**(fields | changes))


def test_a_signature_verifies_only_for_the_verdict_it_was_made_for():
    key = Ed25519PrivateKey.generate()
    signed = verdict()
    signature = sign_verdict(signed, key)
    assert verify_verdict(signed, signature, public_key_b64(key))
    flipped = dataclasses.replace(signed, decision="reject")
    assert not verify_verdict(flipped, signature, public_key_b64(key))


@pytest.mark.parametrize(
    "change",
    [
        {"decision": "maybe"},
        {"candidate_auprc": 1.5},
        {"current_recall": float("nan")},
        {"aggregate_digest": "xyz"},
        {"round_number": 0},
    ],
)
def test_a_malformed_verdict_names_its_field(change):
    with pytest.raises(RosterError) as err:
        verdict(**change)
    assert "verdict." in str(err.value)


def test_the_decision_needs_the_threshold_of_distinct_banks_on_the_same_aggregate():
    votes = [verdict("alpha"), verdict("alpha"), verdict("bravo", aggregate_digest="cd" * 32)]
    assert verdict_decision(votes, 2, DIGEST) is None
    assert verdict_decision([*votes, verdict("charlie")], 2, DIGEST) == "adopt"


def test_a_bank_cannot_change_its_vote_by_signing_again():
    votes = [verdict("alpha", "reject"), verdict("alpha", "adopt"), verdict("bravo", "adopt")]
    assert verdict_decision(votes, 2, DIGEST) is None

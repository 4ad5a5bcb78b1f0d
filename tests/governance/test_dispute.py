"""Disputed rounds as the pure library derives them: objections dispute, clearances clear."""

from __future__ import annotations

import dataclasses

import pytest
from roster_helpers import NOW, Ceremony, new_bank

from governance import (
    Objection,
    RosterError,
    SuspendBank,
    apply,
    check_clearance,
    clearance_message,
    dispute_of,
    dispute_threshold,
    sign_clearance,
    sign_objection,
)


def _objection(ceremony: Ceremony, bank_id: str, round_number: int = 7, **over: str):
    objection = Objection(
        consortium_id=over.get("consortium_id", "acme"),
        round_number=round_number,
        bank_id=bank_id,
        reason_code="aggregate_integrity",
        message=f"round {round_number}: the count slot is negative",
        created_at=NOW,
    )
    key = ceremony[over["signer"]].key if "signer" in over else ceremony[bank_id].key
    return objection, sign_objection(objection, key)


def _objected(ceremony: Ceremony, *banks: str, round_number: int = 7):
    return [_objection(ceremony, b, round_number) for b in banks]


def _cleared(ceremony: Ceremony, *banks: str, round_number: int = 7, consortium: str = "acme"):
    return {b: sign_clearance(consortium, round_number, ceremony[b].key) for b in banks}


def test_the_threshold_is_the_rosters_approval_rule(ceremony):
    # Rule 2/3 of four active banks: ceil(8/3) = 3.
    assert dispute_threshold(ceremony.state) == 3


def test_objections_below_the_threshold_do_not_dispute_a_round(ceremony):
    dispute = dispute_of(ceremony.state, 7, _objected(ceremony, "alpha", "beta"), {})
    assert dispute.objectors == ("alpha", "beta")
    assert not dispute.objected and not dispute.disputed


def test_objections_at_the_threshold_dispute_the_round(ceremony):
    dispute = dispute_of(ceremony.state, 7, _objected(ceremony, "alpha", "beta", "gamma"), {})
    assert dispute.disputed and not dispute.cleared
    assert dispute.as_dict()["objectors"] == ["alpha", "beta", "gamma"]


def test_a_bank_objecting_twice_counts_once(ceremony):
    twice = [*_objected(ceremony, "alpha", "beta"), _objection(ceremony, "alpha")]
    changed = dataclasses.replace(twice[-1][0], message="again")
    twice.append((changed, sign_objection(changed, ceremony["alpha"].key)))
    assert dispute_of(ceremony.state, 7, twice, {}).objectors == ("alpha", "beta")


@pytest.mark.parametrize(
    "bad",
    [
        {"signer": "beta"},  # forged: gamma's objection signed by beta's key
        {"consortium_id": "other"},  # another consortium's objection
    ],
)
def test_an_objection_that_does_not_verify_or_names_another_consortium_does_not_count(
    ceremony, bad
):
    objections = [*_objected(ceremony, "alpha", "beta"), _objection(ceremony, "gamma", **bad)]
    dispute = dispute_of(ceremony.state, 7, objections, {})
    assert dispute.objectors == ("alpha", "beta") and not dispute.disputed


def test_objections_to_another_round_do_not_count(ceremony):
    objections = _objected(ceremony, "alpha", "beta", "gamma", round_number=8)
    assert dispute_of(ceremony.state, 7, objections, {}).objectors == ()


def test_a_suspended_banks_objection_does_not_count_and_the_threshold_follows_the_actives(
    ceremony,
):
    version = ceremony.propose(SuspendBank("gamma"))
    for bank in ("alpha", "beta", "delta"):
        version = ceremony[bank].sign(version)
    state = apply(ceremony.state, version)
    dispute = dispute_of(state, 7, _objected(ceremony, "alpha", "beta", "gamma"), {})
    assert dispute.objectors == ("alpha", "beta")
    # Three active banks: ceil(2/3 of 3) = 2, so the two remaining objectors dispute it.
    assert dispute.threshold == 2 and dispute.disputed


def test_enough_valid_clearances_clear_the_dispute(ceremony):
    objections = _objected(ceremony, "alpha", "beta", "gamma")
    dispute = dispute_of(ceremony.state, 7, objections, _cleared(ceremony, "alpha", "delta"))
    assert dispute.disputed and dispute.clearers == ("alpha", "delta")
    dispute = dispute_of(
        ceremony.state, 7, objections, _cleared(ceremony, "alpha", "beta", "delta")
    )
    assert dispute.cleared and not dispute.disputed


@pytest.mark.parametrize(
    "signature_of",
    [
        lambda c: sign_clearance("acme", 8, c["delta"].key),  # replayed from another round
        lambda c: sign_clearance("other", 7, c["delta"].key),  # from another consortium
        lambda c: sign_clearance("acme", 7, c["alpha"].key),  # forged: alpha's key
        lambda c: sign_clearance("acme", 7, new_bank("delta").key),  # forged: a stranger's key
    ],
)
def test_a_forged_or_replayed_clearance_does_not_count(ceremony, signature_of):
    clearances = {**_cleared(ceremony, "alpha", "beta"), "delta": signature_of(ceremony)}
    dispute = dispute_of(
        ceremony.state, 7, _objected(ceremony, "alpha", "beta", "gamma"), clearances
    )
    assert dispute.clearers == ("alpha", "beta") and dispute.disputed
    assert "does not verify under its roster key" in dispute.ignored["delta"]
    with pytest.raises(RosterError, match="refused"):
        check_clearance(ceremony.state, 7, "delta", clearances["delta"])


def test_a_clearance_by_a_bank_not_on_the_roster_does_not_count(ceremony):
    outsider = new_bank("epsilon")
    clearances = {
        **_cleared(ceremony, "alpha", "beta"),
        "epsilon": sign_clearance("acme", 7, outsider.key),
    }
    dispute = dispute_of(
        ceremony.state, 7, _objected(ceremony, "alpha", "beta", "gamma"), clearances
    )
    assert dispute.ignored == {"epsilon": "not a member"} and dispute.disputed


def test_the_clearance_message_names_the_round_and_the_consortium():
    assert clearance_message("acme", 12) == (
        b"consortium-clear-dispute-v1\nclear dispute of round 12 in consortium acme"
    )
    with pytest.raises(RosterError, match="round_number"):
        clearance_message("acme", 0)

"""The roster data model: strict fields named in every refusal, and lossless round trips."""

from __future__ import annotations

import dataclasses
import math

import pytest
from roster_helpers import NOW, Ceremony, new_bank

from governance import (
    ApprovePolicy,
    ChangeMinBanks,
    ChangePrivacyFloor,
    ChangeRule,
    Charter,
    Member,
    PolicyApproval,
    PrivacyFloor,
    RegisterKeyEpoch,
    RosterError,
    RosterState,
    RosterVersion,
    RotateBankKeys,
    Rule,
    canonical_json,
    change_from_dict,
    change_to_dict,
    parse_version_json,
)


def test_min_banks_below_three_is_refused_in_a_charter(ceremony: Ceremony) -> None:
    with pytest.raises(RosterError, match=r"min_banks must be at least 3 \(got 2\)"):
        dataclasses.replace(ceremony.state.charter(), min_banks=2)


def test_min_banks_below_three_is_refused_as_a_change() -> None:
    with pytest.raises(RosterError, match=r"change_min_banks\.min_banks must be at least 3"):
        ChangeMinBanks(2)


def test_a_genesis_json_with_min_banks_two_is_refused_naming_version_zero(
    ceremony: Ceremony,
) -> None:
    data = ceremony.genesis.to_dict()
    data["change"]["charter"]["min_banks"] = 2

    with pytest.raises(RosterError, match="roster version 0: min_banks must be at least 3"):
        RosterVersion.from_dict(data)


@pytest.mark.parametrize(
    ("active", "needed"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 4), (6, 4), (7, 5), (10, 7)]
)
def test_two_thirds_of_active_members_rounded_up_must_approve(active: int, needed: int) -> None:
    assert Rule(2, 3, 2).required(active) == needed


@pytest.mark.parametrize(
    ("numerator", "denominator", "k_min", "reason"),
    [
        (1, 2, 2, "strict majority"),
        (3, 2, 2, "must not exceed"),
        (2, 3, 1, "rule.k_min must be an integer >= 2"),
        (0, 3, 2, "rule.threshold_numerator must be an integer >= 1"),
        (True, 1, 2, "rule.threshold_numerator"),
    ],
)
def test_an_unsafe_rule_is_refused(
    numerator: int, denominator: int, k_min: int, reason: str
) -> None:
    with pytest.raises(RosterError, match=reason):
        Rule(numerator, denominator, k_min)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("bank_id", "Alpha Bank", "member.bank_id must be a slug"),
        ("name", "", "member 'alpha'.name must be a non-empty string"),
        ("signing_key", "c2hvcnQ=", "member 'alpha'.signing_key must be a base64 raw 32-byte"),
        ("agreement_key", "A" * 44, "member 'alpha'.agreement_key must be a base64 raw 32-byte"),
        ("status", "dormant", "member 'alpha'.status must be one of"),
    ],
)
def test_a_member_with_a_bad_field_is_refused_naming_it(
    field: str, value: str, reason: str
) -> None:
    data = new_bank("alpha").member().to_dict()
    data[field] = value

    with pytest.raises(RosterError, match=reason):
        Member.from_dict(data)


def test_a_key_spelled_without_its_canonical_padding_is_refused() -> None:
    member = new_bank("alpha").member()
    with pytest.raises(RosterError, match="signing_key must be a base64 raw 32-byte Ed25519"):
        dataclasses.replace(member, signing_key=member.signing_key.rstrip("="))


def test_two_members_sharing_a_signing_key_are_refused(ceremony: Ceremony) -> None:
    charter = ceremony.state.charter()
    twin = dataclasses.replace(
        new_bank("zeta").member(), signing_key=charter.members[0].signing_key
    )

    with pytest.raises(RosterError, match=r"charter: signing key .* appears twice"):
        dataclasses.replace(charter, members=(*charter.members, twin))


@pytest.mark.parametrize("ceiling", [0.0, -1.0, math.inf, math.nan, "8", True])
def test_a_bad_epsilon_ceiling_is_refused(ceiling: object) -> None:
    with pytest.raises(RosterError, match=r"privacy\.epsilon_ceiling must be a finite number > 0"):
        PrivacyFloor(True, ceiling)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        RotateBankKeys("alpha", agreement_key=new_bank("x").member().agreement_key),
        RegisterKeyEpoch("12" * 32),
        ChangeRule(Rule(3, 4, 3)),
        ChangeMinBanks(4),
        ChangePrivacyFloor(PrivacyFloor(False, None)),
        ApprovePolicy(PolicyApproval("aml-gnn", 2, "0f" * 32)),
    ],
)
def test_every_change_survives_a_round_trip_through_its_dict(change: object) -> None:
    data = change_to_dict(change)  # type: ignore[arg-type]

    assert change_from_dict(data) == change
    assert canonical_json(change_to_dict(change_from_dict(data))) == canonical_json(data)


def test_an_unknown_change_kind_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(RosterError, match=r"change\.kind 'make_operator_god' is unknown; known: "):
        change_from_dict({"kind": "make_operator_god"})


def test_an_unexpected_field_is_refused_rather_than_ignored() -> None:
    data = change_to_dict(ChangeMinBanks(4)) | {"also": "sneaky"}

    with pytest.raises(
        RosterError, match=r"change \(change_min_banks\): unexpected field\(s\) also"
    ):
        change_from_dict(data)


def test_a_version_with_a_bad_field_names_its_number(ceremony: Ceremony) -> None:
    data = ceremony.genesis.to_dict() | {"number": 4, "created_at": "yesterday"}

    with pytest.raises(RosterError, match="roster version 4: created_at must be an ISO 8601"):
        RosterVersion.from_dict(data)


@pytest.mark.parametrize("text", ['{"number": NaN}', "[" * 100_000, "not json"])
def test_hostile_json_is_a_roster_error(text: str) -> None:
    with pytest.raises(RosterError):
        parse_version_json(text)


def test_canonical_json_is_sorted_compact_utf8_and_refuses_nan() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    with pytest.raises(RosterError, match="cannot encode canonically"):
        canonical_json({"x": math.nan})


def test_a_roster_state_survives_a_round_trip_through_its_dict(ceremony: Ceremony) -> None:
    state = ceremony.state

    assert RosterState.from_dict(state.to_dict()) == state
    assert Charter.from_dict(state.charter().to_dict()) == state.charter()


def test_a_version_created_at_must_be_iso(ceremony: Ceremony) -> None:
    assert dataclasses.replace(ceremony.genesis, created_at=NOW).created_at == NOW
    with pytest.raises(RosterError, match="created_at must be an ISO 8601 timestamp"):
        dataclasses.replace(ceremony.genesis, created_at="01/12/2026")

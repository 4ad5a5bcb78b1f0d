"""Signed objections: a node's refusal, verifiable by anyone holding the bank's roster key."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from roster_helpers import NOW, Ceremony

from governance import Objection, RosterError, sign_objection, verify_objection
from governance.objection import objection_message


def objection() -> Objection:
    return Objection("acme", 7, "alpha", "unknown_bank", "manifest names bank 'sham'", NOW)


def test_a_signed_objection_verifies_under_the_banks_key(ceremony: Ceremony) -> None:
    signature = sign_objection(objection(), ceremony["alpha"].key)

    assert verify_objection(objection(), signature, ceremony["alpha"].public)
    assert not verify_objection(objection(), signature, ceremony["beta"].public)


@pytest.mark.parametrize(
    "change", [{"round_number": 8}, {"reason_code": "policy_unapproved"}, {"message": "all fine"}]
)
def test_an_objection_changed_after_signing_no_longer_verifies(
    ceremony: Ceremony, change: dict[str, Any]
) -> None:
    signature = sign_objection(objection(), ceremony["alpha"].key)

    assert not verify_objection(
        dataclasses.replace(objection(), **change), signature, ceremony["alpha"].public
    )


def test_the_objection_message_is_domain_separated() -> None:
    assert objection_message(objection()).startswith(b"consortium-objection-v1\n{")


def test_an_objection_survives_a_round_trip_through_json() -> None:
    assert Objection.from_json(json.dumps(objection().to_dict())) == objection()


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("reason_code", "Not A Code", "objection.reason_code must be"),
        ("round_number", -1, "objection.round_number must be an integer >= 0"),
        ("bank_id", "", "objection.bank_id must be a slug"),
        ("message", "", "objection.message must be a non-empty string"),
    ],
)
def test_a_bad_objection_field_is_refused_naming_it(field: str, value: object, reason: str) -> None:
    with pytest.raises(RosterError, match=reason):
        Objection.from_dict(objection().to_dict() | {field: value})

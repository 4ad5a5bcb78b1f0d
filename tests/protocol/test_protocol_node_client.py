"""The node's client turns a malformed portal answer into a clear PortalError."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from bank_node.portal_client import PortalError
from protocol import RoundInfo
from tests.protocol.messages import policy_dict, round_dict
from tests.standin_portal import standin_portal


@pytest.fixture
def portal() -> Iterator[dict[str, Any]]:
    """A stand-in portal that answers every GET with ``answer["status"]``/``answer["body"]``."""
    answer: dict[str, Any] = {"status": 200, "body": b"{}"}
    with standin_portal(lambda *_: (answer["status"], answer["body"])) as client:
        answer["client"] = client
        yield answer


def test_the_current_round_arrives_as_a_round_info(portal):
    portal["body"] = json.dumps(round_dict()).encode()
    rnd = portal["client"].current_round()
    assert isinstance(rnd, RoundInfo) and rnd.number == 4 and rnd.policy.min_banks == 3


def test_no_round_in_flight_is_none(portal):
    portal["status"], portal["body"] = 204, b""
    assert portal["client"].current_round() is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (round_dict(policy=policy_dict(local_epochs=None)), "policy.local_epochs"),
        (round_dict(policy=policy_dict(min_banks=2)), "policy.min_banks"),
        ({k: v for k, v in round_dict().items() if k != "key_epoch"}, "key_epoch"),
        ([1, 2, 3], "RoundInfo"),
    ],
    ids=["policy-field-null", "min-banks-two", "missing-field", "not-an-object"],
)
def test_a_malformed_current_round_is_a_portal_error_naming_the_field(portal, body, field):
    portal["body"] = json.dumps(body).encode()
    with pytest.raises(PortalError, match="malformed answer from the portal") as caught:
        portal["client"].current_round()
    assert caught.value.extra == {"field": field}
    assert field in caught.value.message


def test_an_answer_that_is_not_json_is_a_portal_error(portal):
    portal["body"] = b"<html>gateway</html>"
    with pytest.raises(PortalError, match="not JSON"):
        portal["client"].current_round()

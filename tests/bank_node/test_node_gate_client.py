"""The node's client posts a signed gate verdict as the contract says (docs/robustness.md, "Wire").

The portal's verdict endpoint is built on another branch; this pins the request the node
sends (``POST /api/v1/rounds/{E}/verdicts`` with ``{"verdict", "signature"}``) and how it
reads a refusal, against a stand-in HTTP server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from bank_node.portal_client import PortalError
from governance.verdict import GateVerdict, sign_verdict, verify_verdict
from tests.governance.roster_helpers import new_bank
from tests.standin_portal import standin_portal


@pytest.fixture
def portal() -> Iterator[dict[str, Any]]:
    """Answers every POST with ``seen["status"]`` and records path, headers and body."""
    seen: dict[str, Any] = {"status": 201, "answer": {"stored": True}}

    def answer(
        method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, bytes]:
        seen["path"], seen["auth"], seen["body"] = path, headers["Authorization"], json.loads(body)
        return seen["status"], json.dumps(seen["answer"]).encode()

    with standin_portal(answer) as client:
        seen["client"] = client
        yield seen


def _verdict() -> GateVerdict:
    return GateVerdict(
        consortium_id="acme",
        round_number=8,
        candidate_round=7,
        aggregate_digest="cd" * 32,
        decision="reject",
        candidate_auprc=0.014182,
        current_auprc=0.046196,
        candidate_recall=0.05,
        current_recall=0.2,
        bank_id="alpha",
        created_at="2026-12-01T22:00:00+00:00",
    )


def test_a_verdict_is_posted_to_its_evaluation_round_with_its_signature(portal):
    bank, verdict = new_bank("alpha"), _verdict()
    signature = sign_verdict(verdict, bank.key)
    answer = portal["client"].send_verdict(8, verdict.to_dict(), signature)
    assert answer == {"stored": True}
    assert portal["path"] == "/api/v1/rounds/8/verdicts"
    assert portal["auth"] == "Bearer cred"
    assert set(portal["body"]) == {"verdict", "signature"}
    received = GateVerdict.from_dict(portal["body"]["verdict"])
    assert received == verdict
    assert verify_verdict(received, portal["body"]["signature"], bank.public)


def test_a_second_different_verdict_is_a_portal_error_carrying_the_portals_message(portal):
    portal["status"] = 409
    portal["answer"] = {"message": "bank alpha already sent another verdict", "extra": {}}
    with pytest.raises(PortalError) as refused:
        portal["client"].send_verdict(8, _verdict().to_dict(), "c2ln")
    assert refused.value.status == 409
    assert "already sent another verdict" in refused.value.message

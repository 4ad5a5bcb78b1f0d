"""Fixtures for the evaluation gate: four roster-signed banks, a gated policy, and helpers
that publish rounds and sign verdicts the way the nodes do."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from consortium.rounds.models import Round, RoundPolicy, RoundState
from governance.verdict import GateVerdict, sign_verdict
from tests.conftest import Ckks
from tests.consortium.secagg_rounds.conftest import masked_policy_create, roster_store
from tests.governance.portal_helpers import FOUNDER_IDS, Founder, onboard
from tests.governance.roster_helpers import NOW

DIGEST = "d1" * 32


def gated_policy_create(**fields: Any) -> RoundPolicy:
    values: dict[str, Any] = {"secure_aggregation": "v1", "gate_tolerance": 0.02, **fields}
    return masked_policy_create(name="gated", **values)


@pytest.fixture
def members(db: Any) -> dict[str, Founder]:
    return {bank_id: onboard(bank_id) for bank_id in FOUNDER_IDS}


@pytest.fixture
def gated(db: Any, epoch: Any) -> RoundPolicy:
    return gated_policy_create()


@pytest.fixture
def banks(members: dict[str, Founder], ckks: Ckks, gated: RoundPolicy) -> dict[str, Founder]:
    """The four founders with a roster in force that approves the gated policy."""
    roster_store(members, ckks, gated)
    return members


def publish(rnd: Round, *, digest: str = DIGEST, at: datetime | None = None) -> Round:
    """Mark ``rnd`` published with aggregate ``digest`` (the sum itself is not needed)."""
    rnd.state, rnd.closed_at, rnd.aggregate_digest = (
        RoundState.PUBLISHED,
        at or timezone.now(),
        digest,
    )
    rnd.save(update_fields=["state", "closed_at", "aggregate_digest"])
    return rnd


def fail(rnd: Round) -> Round:
    rnd.state, rnd.closed_at, rnd.failure_reason = RoundState.FAILED, timezone.now(), "test"
    rnd.save(update_fields=["state", "closed_at", "failure_reason"])
    return rnd


def verdict(
    evaluation: Round, bank_id: str, decision: str = "adopt", **changes: Any
) -> GateVerdict:
    """What bank ``bank_id`` signs after decrypting ``evaluation``'s aggregate."""
    assert evaluation.candidate_round is not None
    about = (evaluation.number, evaluation.candidate_round.number, evaluation.aggregate_digest)
    return verdict_on(*about, bank_id, decision, **changes)


def verdict_on(
    number: int, candidate: int, digest: str, bank_id: str, decision: str, **changes: Any
) -> GateVerdict:
    fields: dict[str, Any] = {
        "consortium_id": "acme",
        "round_number": number,
        "candidate_round": candidate,
        "aggregate_digest": digest,
        "decision": decision,
        "candidate_auprc": 0.61 if decision == "adopt" else 0.41,
        "current_auprc": 0.52,
        "candidate_recall": 0.55,
        "current_recall": 0.5,
        "bank_id": bank_id,
        "created_at": NOW,
        **changes,
    }
    return GateVerdict(**fields)


def post_verdict(
    client: Client,
    founder: Founder,
    evaluation: Round,
    decision: str = "adopt",
    *,
    signer: Founder | None = None,
    **changes: Any,
) -> Any:
    """``founder`` posts a verdict signed by ``signer`` (itself unless a forgery is wanted)."""
    body = verdict(evaluation, founder.slug, decision, **changes)
    signature = sign_verdict(body, (signer or founder).keys.key)
    return client.post(
        f"/api/v1/rounds/{evaluation.number}/verdicts",
        data=json.dumps({"verdict": body.to_dict(), "signature": signature}),
        content_type="application/json",
        **founder.auth(),
    )


def all_agree(client: Client, banks: dict[str, Founder], evaluation: Round, decision: str) -> None:
    for slug in ("alpha", "beta", "gamma"):
        response = post_verdict(client, banks[slug], evaluation, decision)
        assert response.status_code == 201, response.json()


def after_deadline(evaluation: Round) -> datetime:
    assert evaluation.closed_at is not None
    return evaluation.closed_at + evaluation.policy.deadline + timedelta(seconds=1)

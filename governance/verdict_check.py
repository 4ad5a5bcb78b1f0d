"""Which signed gate verdicts count for an evaluation round, and the decision they give.

Pure, so that the portal (when it decides what may be a base) and ``python -m
audit.verify`` (when it re-checks a report) count exactly the same verdicts: signed under
the bank's roster key by an active member, about this evaluation round, this candidate
and this published aggregate. Everything else is ignored, with the reason kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from governance.charter import RosterState
from governance.dispute import dispute_threshold
from governance.verdict import GateVerdict, verdict_decision, verify_verdict


@dataclass(frozen=True)
class GateTally:
    """An evaluation round's counted verdicts and the decision they reach (or None)."""

    round_number: int
    candidate_round: int
    aggregate_digest: str
    threshold: int
    counted: tuple[GateVerdict, ...]
    ignored: dict[str, str] = field(default_factory=dict)

    @property
    def decision(self) -> str | None:
        return verdict_decision(self.counted, self.threshold, self.aggregate_digest)

    def as_dict(self) -> dict[str, Any]:
        return {
            "round": self.round_number,
            "candidate_round": self.candidate_round,
            "aggregate_digest": self.aggregate_digest,
            "threshold": self.threshold,
            "decision": self.decision,
            "verdicts": {v.bank_id: v.decision for v in self.counted},
        }


def binding_refusal(
    verdict: GateVerdict, state: RosterState, round_number: int, candidate: int, digest: str
) -> str | None:
    """Why ``verdict`` is about something else than this round's published aggregate."""
    if verdict.consortium_id != state.consortium_id:
        return f"is signed for consortium {verdict.consortium_id!r}, not {state.consortium_id!r}"
    if verdict.round_number != round_number:
        return f"names evaluation round {verdict.round_number}, not {round_number}"
    if verdict.candidate_round != candidate:
        return (
            f"names candidate round {verdict.candidate_round}; round {round_number} gates "
            f"{candidate}"
        )
    if verdict.aggregate_digest != digest:
        return (
            f"is about aggregate {verdict.aggregate_digest}; round {round_number} published "
            f"{digest or 'no aggregate'}"
        )
    return None


def verdict_refusal(
    state: RosterState,
    verdict: GateVerdict,
    signature: str,
    *,
    round_number: int,
    candidate_round: int,
    aggregate_digest: str,
) -> str | None:
    """Why ``verdict`` does not count for evaluation round ``round_number``, or None."""
    why = binding_refusal(verdict, state, round_number, candidate_round, aggregate_digest)
    return why if why is not None else signer_refusal(state, verdict, signature)


def signer_refusal(state: RosterState, verdict: GateVerdict, signature: str) -> str | None:
    """Why ``verdict`` is not signed by an active member under its roster key, or None."""
    key = state.signing_key_of(verdict.bank_id)
    if key is None:
        member = state.member(verdict.bank_id)
        return "not a member" if member is None else f"bank is {member.status}"
    if not verify_verdict(verdict, signature, key):
        return "signature does not verify under the bank's roster key (forged or altered)"
    return None


def gate_tally(
    state: RosterState,
    signed: Iterable[tuple[GateVerdict, str]],
    *,
    round_number: int,
    candidate_round: int,
    aggregate_digest: str,
) -> GateTally:
    """Count the verdicts that verify; one per bank (the first, in bank order)."""
    counted: dict[str, GateVerdict] = {}
    ignored: dict[str, str] = {}
    for verdict, signature in sorted(signed, key=lambda vs: (vs[0].bank_id, vs[1])):
        if verdict.bank_id in counted:
            continue
        why = verdict_refusal(
            state,
            verdict,
            signature,
            round_number=round_number,
            candidate_round=candidate_round,
            aggregate_digest=aggregate_digest,
        )
        if why is None:
            counted[verdict.bank_id] = verdict
            ignored.pop(verdict.bank_id, None)
        else:
            ignored[verdict.bank_id] = why
    return GateTally(
        round_number=round_number,
        candidate_round=candidate_round,
        aggregate_digest=aggregate_digest,
        threshold=dispute_threshold(state),
        counted=tuple(counted.values()),
        ignored=ignored,
    )

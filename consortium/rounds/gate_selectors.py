"""Reads for the evaluation gate: verdicts as stored, decisions derived from their signatures.

A decision is never read from a stored flag: every call re-verifies the stored verdicts
under the roster in force (``governance.verdict_check.gate_tally``), so a row an operator
inserts, edits or "approves" by hand counts for nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import QuerySet

from consortium.governance import selectors as roster
from consortium.rounds.models import GateVerdict, Round, RoundKind, RoundState
from governance import RosterError
from governance.verdict import GateVerdict as SignedVerdict
from governance.verdict_check import GateTally, gate_tally


@dataclass(frozen=True)
class Gate:
    """A training round's evaluation round and what its verified verdicts say."""

    evaluation: Round
    tally: GateTally | None  # None until the evaluation round publishes, or without a roster

    @property
    def decision(self) -> str | None:
        return self.tally.decision if self.tally is not None else None

    @property
    def verdict_deadline(self) -> datetime | None:
        """Until when the scheduler waits for verdicts: closed_at + the policy deadline."""
        closed = self.evaluation.closed_at
        if closed is None:
            return None
        return closed + timedelta(seconds=self.evaluation.policy_snapshot["deadline_seconds"])


def is_gated(rnd: Round) -> bool:
    """A training round opened under a policy with the evaluation gate on."""
    return rnd.kind == RoundKind.TRAINING and rnd.policy_snapshot.get("gate_tolerance") is not None


def verdict_list(rnd: Round) -> list[GateVerdict]:
    """The verdicts stored for evaluation round ``rnd``, by bank."""
    return list(rnd.verdicts.select_related("bank").order_by("bank__slug"))


def verdict_get(rnd: Round, bank_id: int) -> GateVerdict | None:
    return GateVerdict.objects.filter(round=rnd, bank_id=bank_id).first()


def signed_verdicts(rows: Iterable[GateVerdict]) -> list[tuple[SignedVerdict, str]]:
    """Stored rows as signed verdicts; a body that no longer parses counts for nothing."""
    out = []
    for row in rows:
        try:
            out.append((SignedVerdict.from_dict(row.verdict), row.signature))
        except RosterError:
            continue
    return out


def _tally(evaluation: Round, rows: Iterable[GateVerdict]) -> GateTally | None:
    state = roster.roster_state()
    if state is None or evaluation.state != RoundState.PUBLISHED:
        return None
    return gate_tally(
        state,
        signed_verdicts(rows),
        round_number=evaluation.number,
        candidate_round=_candidate_number(evaluation),
        aggregate_digest=evaluation.aggregate_digest,
    )


def _candidate_number(evaluation: Round) -> int:
    candidate = evaluation.candidate_round
    assert candidate is not None
    return candidate.number


def evaluation_rounds(candidates: Iterable[int]) -> QuerySet[Round]:
    return (
        Round.objects.filter(kind=RoundKind.EVALUATION, candidate_round__number__in=candidates)
        .select_related("candidate_round")
        .defer("candidate_round__policy_snapshot", "candidate_round__manifest", "manifest")
        .order_by("number")
    )


def gates_for(candidates: Iterable[int]) -> dict[int, Gate]:
    """The gate of each of these training rounds that has an evaluation round, by number.

    The newest evaluation round of a candidate is its gate (there is one unless a round
    was re-run by hand). Verdicts are read in one query and verified here.
    """
    wanted = sorted(set(candidates))
    if not wanted:
        return {}
    evaluations = {_candidate_number(e): e for e in evaluation_rounds(wanted)}
    rows: dict[int, list[GateVerdict]] = {}
    for row in GateVerdict.objects.filter(round__in=list(evaluations.values())):
        rows.setdefault(row.round_id, []).append(row)
    return {n: Gate(e, _tally(e, rows.get(e.pk, []))) for n, e in evaluations.items()}


def gate_of(candidate: Round) -> Gate | None:
    return gates_for([candidate.number]).get(candidate.number)


def evaluation_tally(evaluation: Round) -> GateTally | None:
    """What the verified verdicts of evaluation round ``evaluation`` say (None: unpublished)."""
    return _tally(evaluation, verdict_list(evaluation))


def rounds_not_adopted(rounds: Iterable[Round]) -> set[int]:
    """Which of these rounds are gated candidates the banks' verdicts did not adopt."""
    gated = [r.number for r in rounds if is_gated(r)]
    gates = gates_for(gated)
    return {n for n in gated if n not in gates or gates[n].decision != "adopt"}

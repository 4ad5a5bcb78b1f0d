"""The evaluation gate's writes: the scheduler's gate step, and the banks' signed verdicts.

After a gated training round publishes, the scheduler's next round is its evaluation
round; the next training round waits until the banks' verified verdicts decide, or the
verdict deadline passes (docs/robustness.md, "The evaluation gate"). The decision is
recorded in the audit trail when the scheduler moves on, but what may be a base is
always derived again from the signatures (``gate_selectors``), never from that event.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from audit.selectors import audit_round_event_recorded
from audit.services import audit_record
from consortium import metrics
from consortium.api.errors import ApplicationError, Conflict, Forbidden, NotFound
from consortium.governance import selectors as roster
from consortium.members.models import Bank
from consortium.rounds import gate_selectors
from consortium.rounds.models import GateVerdict, Round, RoundKind, RoundPolicy, RoundState
from governance import RosterError
from governance.verdict import GateVerdict as SignedVerdict
from governance.verdict_check import GateTally, binding_refusal, signer_refusal


class GateStep(enum.Enum):
    """What the scheduler does next under a policy, as far as the gate is concerned."""

    TRAIN = "train"  # no gate pending: open a training (or statistics) round as usual
    EVALUATE = "evaluate"  # a gated candidate published: open its evaluation round
    WAIT = "wait"  # the evaluation round published; its verdicts are still coming


@dataclass(frozen=True)
class GateNext:
    step: GateStep
    candidate: Round | None = None


def gate_next(policy: RoundPolicy, now: datetime) -> GateNext:
    """The gate's say in what opens next under ``policy`` (call under the policy lock).

    Moving on from an evaluation round records its decision once (``round.gate_decided``).
    """
    last = (
        policy.rounds.exclude(kind__in=(RoundKind.STATISTICS, RoundKind.SKETCH))
        .order_by("-number")
        .first()
    )
    if last is None:
        return GateNext(GateStep.TRAIN)
    if last.kind == RoundKind.TRAINING:
        evaluate = last.state == RoundState.PUBLISHED and gate_selectors.is_gated(last)
        return GateNext(GateStep.EVALUATE, last) if evaluate else GateNext(GateStep.TRAIN)
    if last.kind == RoundKind.EVALUATION and last.state in (
        RoundState.PUBLISHED,
        RoundState.FAILED,
    ):
        return _after_evaluation(last, now)
    return GateNext(GateStep.TRAIN)


def _after_evaluation(evaluation: Round, now: datetime) -> GateNext:
    """Wait while a published evaluation round is undecided before its verdict deadline;
    otherwise record the outcome (a failed one leaves its candidate undecided) and train."""
    gate = gate_selectors.Gate(evaluation, gate_selectors.evaluation_tally(evaluation))
    deadline = gate.verdict_deadline
    published = evaluation.state == RoundState.PUBLISHED
    if gate.decision is None and published and deadline is not None and now < deadline:
        return GateNext(GateStep.WAIT)
    gate_decided_record(evaluation, gate.tally)
    return GateNext(GateStep.TRAIN)


def gate_decided_record(evaluation: Round, tally: GateTally | None) -> None:
    """Audit (and count) the gate's outcome for ``evaluation``, the first time only.

    Runs after this transaction locked the policy row, so two schedulers never both
    record it; the trail lookup makes a later tick a no-op.
    """
    if audit_round_event_recorded(action="round.gate_decided", round_number=evaluation.number):
        return
    outcome = (tally.decision if tally is not None else None) or "undecided"
    candidate = evaluation.candidate_round
    audit_record(
        action="round.gate_decided",
        actor="scheduler",
        target=evaluation,
        data={
            "round": evaluation.number,
            "candidate_round": candidate.number if candidate is not None else None,
            "decision": outcome,
            "evaluation_state": evaluation.state,
            "verdicts": tally.as_dict()["verdicts"] if tally is not None else {},
            "threshold": tally.threshold if tally is not None else None,
        },
    )
    # After commit: a rolled-back tick must not count a decision the trail does not hold.
    transaction.on_commit(lambda: metrics.gate_decided(outcome))


# --- verdicts: banks post their signed reading of a published evaluation round -----------


def verdict_submit(
    *, number: int, bank: Bank, verdict_json: Any, signature: str
) -> tuple[GateVerdict, bool]:
    """Store ``bank``'s signed verdict on evaluation round ``number``; True if it is new.

    The same verdict again is answered with the stored row (False); a different one by
    the same bank is a 409. Refusals are audited (``gate.verdict_refused``).
    """
    actor = f"bank:{bank.slug}"
    try:
        return _verdict_store(number, bank, verdict_json, signature, actor)
    except RosterError as exc:
        raise ApplicationError(f"verdict refused: {exc}", code=exc.code).audited(
            action="gate.verdict_refused", actor=actor, data={"round": number, "bank": bank.slug}
        ) from None
    except ApplicationError as exc:
        exc.audited(
            action="gate.verdict_refused", actor=actor, data={"round": number, "bank": bank.slug}
        )
        raise


def _evaluation_locked(number: int) -> Round:
    # Locked so that a verdict and the scheduler's gate step see the same published round,
    # and two verdicts of one bank are stored one after the other. Only the round row:
    # PostgreSQL cannot lock the nullable side of the candidate join.
    rnd = (
        Round.objects.select_for_update(of=("self",))
        .select_related("candidate_round")
        .filter(number=number)
        .first()
    )
    if rnd is None:
        raise NotFound(f"round {number} does not exist")
    if rnd.kind != RoundKind.EVALUATION:
        raise Conflict(f"round {number} is a {rnd.kind} round; verdicts go to evaluation rounds")
    if rnd.state != RoundState.PUBLISHED:
        raise Conflict(
            f"evaluation round {number} is {rnd.state}; verdicts are accepted once it is published"
        )
    return rnd


def _verdict_check(rnd: Round, bank: Bank, verdict: SignedVerdict, signature: str) -> None:
    if verdict.bank_id != bank.slug:
        raise Forbidden(
            f"the verdict is signed as bank {verdict.bank_id!r}; you are {bank.slug!r} and "
            "may send only your own"
        )
    state = roster.roster_state()
    if state is None:
        raise Conflict("no roster genesis is in force; verdicts are signed under roster keys")
    candidate = rnd.candidate_round
    assert candidate is not None  # an evaluation round always has one
    refusal = f"verdict of bank {bank.slug!r} on round {rnd.number} refused"
    about = binding_refusal(verdict, state, rnd.number, candidate.number, rnd.aggregate_digest)
    if about is not None:
        raise ApplicationError(f"{refusal}: it {about}")
    signer = signer_refusal(state, verdict, signature)
    if signer is not None:
        raise Forbidden(f"{refusal}: {signer}")


@transaction.atomic
def _verdict_store(
    number: int, bank: Bank, verdict_json: Any, signature: str, actor: str
) -> tuple[GateVerdict, bool]:
    rnd = _evaluation_locked(number)
    verdict = SignedVerdict.from_dict(verdict_json)
    _verdict_check(rnd, bank, verdict, signature)
    existing = gate_selectors.verdict_get(rnd, bank.pk)
    if existing is not None:
        if existing.verdict == verdict.to_dict() and existing.signature == signature:
            return existing, False
        raise Conflict(
            f"bank {bank.slug!r} already sent a different verdict on round {number}; "
            "a bank's verdict cannot be changed"
        )
    try:
        with transaction.atomic():
            row = GateVerdict.objects.create(
                round=rnd, bank=bank, verdict=verdict.to_dict(), signature=signature
            )
    except IntegrityError:  # pragma: no cover - the round row lock serialises senders
        raise Conflict(f"bank {bank.slug!r} already sent a verdict on round {number}") from None
    audit_record(
        action="gate.verdict_recorded",
        actor=actor,
        target=row,
        data={"round": number, "verdict": verdict.to_dict(), "signature": signature},
    )
    return row, True

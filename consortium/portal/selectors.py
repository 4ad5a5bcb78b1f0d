"""Page-specific composition of reads: each returns what a page shows in a fixed number of queries.

The queries themselves live in the selectors of the app that owns the data
(``consortium.rounds.selectors``, ``consortium.members.selectors``); what is here joins
them for a page, re-checks signatures, or reads the audit trail.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from audit import selectors as audit_selectors
from consortium.members.models import Bank
from consortium.portal.access import AUDITORS_GROUP
from consortium.portal.models import BankRepresentative
from consortium.rounds import gate_selectors
from consortium.rounds import selectors as rounds_selectors
from consortium.rounds.models import Round, RoundKind, RoundState, Submission
from consortium.rounds.selectors_attention import NEAR_BUDGET
from consortium.rounds.selectors_epsilon import epsilon_signed

if TYPE_CHECKING:  # annotations only: reads of the trail go through audit.selectors
    from audit.models import AuditEvent


# --- the consortium's state ---------------------------------------------------------------


def halt_recorded() -> audit_selectors.RecordedState | None:
    """The halt the scheduler last recorded (``consortium.halted``), or None once it resumed.

    What the banner shows: one query on every page, where deriving the state afresh
    (``selectors_state.consortium_state``) takes a dozen; the scheduler records each change
    on the tick it finds it, and the overview says when.
    """
    last = audit_selectors.audit_consortium_state_last()
    return last if last is not None and last.halted else None


# --- banks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BankSummary:
    """A bank's onboarding and participation at a glance."""

    submissions: int
    first_round: int | None
    last_round: int | None
    metric_reports: int
    credential_issued_at: datetime
    representatives: list[BankRepresentative]


def bank_summary(bank: Bank) -> BankSummary:
    subs = rounds_selectors.submission_totals_for_bank(bank)
    reports = rounds_selectors.metric_report_count_for_bank(bank)
    rotated = audit_selectors.audit_last_time(
        action="bank.credential_rotated", object_type="members.bank", object_id=str(bank.pk)
    )
    reps = list(BankRepresentative.objects.filter(bank=bank).select_related("user"))
    return BankSummary(
        submissions=subs["n"],
        first_round=subs["first"],
        last_round=subs["last"],
        metric_reports=reports,
        credential_issued_at=rotated or bank.created_at,
        representatives=reps,
    )


@dataclass(frozen=True)
class ParticipationRow:
    round: Round
    submission: Submission | None
    metrics: dict[str, Any] | None
    epsilon: float | None = None  # signed with the upload (selectors_epsilon), not reported


def participation_rows(bank: Bank, rounds: Sequence[Round]) -> list[ParticipationRow]:
    """Join one page of rounds with this bank's submissions, signed ε and reports (3 queries)."""
    ids = [r.pk for r in rounds]
    subs = rounds_selectors.submission_list_for_bank(bank, ids)
    reports = rounds_selectors.metric_report_metrics_for_bank(bank, ids)
    signed = {
        f.round: f.epsilon for f in epsilon_signed(rounds=[r.number for r in rounds], bank=bank)
    }
    return [
        ParticipationRow(r, subs.get(r.pk), reports.get(r.pk), signed.get(r.number)) for r in rounds
    ]


def bank_events(bank: Bank, limit: int = 10) -> list[AuditEvent]:
    """The newest audit events about this bank or made by its node."""
    return audit_selectors.audit_events_about(
        object_type="members.bank", object_id=str(bank.pk), actor=f"bank:{bank.slug}", limit=limit
    )


# --- rounds --------------------------------------------------------------------------------


def uploads_rejected_recent(limit: int = 10) -> list[AuditEvent]:
    return list(
        audit_selectors.audit_event_list(action="update.rejected", newest_first=True)[:limit]
    )


@dataclass(frozen=True)
class Progress:
    """Who has submitted to the round in flight and who is still missing."""

    round: Round
    submitted: list[Submission]
    missing: list[Bank]

    @property
    def min_banks(self) -> int:
        return int(self.round.policy_snapshot.get("min_banks", 2))

    @property
    def expected(self) -> int:
        return len(self.submitted) + len(self.missing)

    @property
    def percent(self) -> int:
        return round(100 * len(self.submitted) / self.expected) if self.expected else 0

    @property
    def enough(self) -> bool:
        return len(self.submitted) >= self.min_banks

    @property
    def time_left(self) -> timedelta:
        return max(self.round.deadline_at - timezone.now(), timedelta(0))


def round_progress(rnd: Round) -> Progress:
    submitted = rounds_selectors.submission_list_for_round(rnd, order_by="received_at")
    missing = rounds_selectors.bank_list_missing_from(rnd)
    return Progress(rnd, submitted, missing)


def auprc_means(round_ids: Iterable[int]) -> dict[int, float]:
    """Mean self-reported AUPRC per round, for one page of rounds (one query)."""
    values: dict[int, list[float]] = defaultdict(list)
    for round_id, metrics in rounds_selectors.metric_report_metrics_for_rounds(round_ids):
        value = metrics.get("auprc") if isinstance(metrics, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            values[round_id].append(float(value))
    return {k: sum(v) / len(v) for k, v in values.items()}


# --- the evaluation gate -------------------------------------------------------------------


@dataclass(frozen=True)
class VerdictRow:
    """A stored verdict as the round page lists it: does it count, and if not, why."""

    bank: str
    verdict: dict[str, Any]
    counted: bool
    ignored: str | None
    received_at: datetime


@dataclass(frozen=True)
class GatePanel:
    """What a round page says about the gate of a training round (or of an evaluation one).

    ``status`` is ``adopt``, ``reject``, ``waiting`` (verdicts still awaited before the
    deadline), ``undecided`` (deadline passed or evaluation failed) or ``pending`` (the
    gated round has no evaluation round yet).
    """

    candidate: Round
    evaluation: Round | None
    status: str
    threshold: int | None
    deadline: datetime | None
    rows: list[VerdictRow]
    figures: dict[str, Any] | None  # a counted verdict that reached the decision
    alert_budget: str = ""  # the candidate policy's gate_alert_rate, as a percentage


def gate_panel(rnd: Round) -> GatePanel | None:
    """The gate ``rnd`` is part of (as candidate or as evaluation round); None if none."""
    if rnd.kind == RoundKind.EVALUATION and rnd.candidate_round is not None:
        candidate = rnd.candidate_round
    elif gate_selectors.is_gated(rnd):
        candidate = rnd
    else:
        return None
    gate = gate_selectors.gate_of(candidate)
    if gate is None:
        return GatePanel(candidate, None, "pending", None, None, [], None, _budget(candidate))
    rows = gate_selectors.verdict_list(gate.evaluation)
    tally = gate.tally
    counted = {v.bank_id: v for v in tally.counted} if tally is not None else {}
    listed = [
        VerdictRow(
            bank=row.bank.slug,
            verdict=row.verdict,
            counted=row.bank.slug in counted,
            ignored=tally.ignored.get(row.bank.slug) if tally is not None else None,
            received_at=row.received_at,
        )
        for row in rows
    ]
    agreeing = [v for v in counted.values() if v.decision == gate.decision]
    return GatePanel(
        candidate=candidate,
        evaluation=gate.evaluation,
        status=_gate_status(gate),
        threshold=tally.threshold if tally is not None else None,
        deadline=gate.verdict_deadline,
        rows=listed,
        figures=agreeing[0].to_dict() if agreeing else None,
        alert_budget=_budget(candidate),
    )


def _budget(candidate: Round) -> str:
    rate = candidate.policy_snapshot.get("gate_alert_rate")
    return f"{rate:.2%}" if isinstance(rate, int | float) else "—"


def _gate_status(gate: gate_selectors.Gate) -> str:
    """adopt or reject; else undecided once the scheduler moved on (failed evaluation,
    deadline passed, or its decision event in the trail), waiting before that."""
    if gate.decision is not None:
        return gate.decision
    deadline = gate.verdict_deadline
    moved_on = (
        gate.evaluation.state == RoundState.FAILED
        or (deadline is not None and timezone.now() >= deadline)
        or audit_selectors.audit_round_event_recorded(
            action="round.gate_decided", round_number=gate.evaluation.number
        )
    )
    return "undecided" if moved_on else "waiting"


def gate_decisions(rounds: Iterable[Round]) -> dict[int, str]:
    """The gate status of each evaluated training round among ``rounds`` (rounds table).

    Looked up by evaluation round rather than by the policy snapshot, which the table's
    query leaves behind; a gated round not evaluated yet is simply not listed.
    """
    gates = gate_selectors.gates_for(r.number for r in rounds if r.kind == RoundKind.TRAINING)
    return {n: _gate_status(gate) for n, gate in gates.items()}


def account_list() -> list[Any]:
    """Representatives' and auditors' accounts (operators are managed from the CLI)."""
    from_group = get_user_model().objects.filter(groups__name=AUDITORS_GROUP)
    linked = get_user_model().objects.filter(bank_representative__isnull=False)
    users = (
        (from_group | linked)
        .distinct()
        .select_related("bank_representative__bank")
        .order_by("username")
    )
    return list(users)


# --- banks needing attention (the overview) ----------------------------------------------


@dataclass(frozen=True)
class AttentionRow:
    """A bank the overview lists, and every reason to look at it, in words."""

    bank: Bank
    reasons: list[str]


def refused_banks(events: Iterable[AuditEvent]) -> dict[str, str]:
    """``{bank slug: reason}`` of the refused uploads among ``events`` (newest wins)."""
    out: dict[str, str] = {}
    for event in events:
        if event.actor.startswith("bank:"):
            out.setdefault(event.actor.removeprefix("bank:"), str(event.data.get("reason", "")))
    return out


def attention_rows(
    banks: Iterable[Any],
    *,
    recent: Sequence[Round],
    budget: float | None,
    flagged: dict[str, str],
    now: datetime,
) -> list[AttentionRow]:
    """Word each reason of ``selectors_attention.bank_list_needing_attention`` rows."""
    rows = []
    for bank in banks:
        reasons = []
        if bank.status == "suspended":
            reasons.append("suspended: its node may not take part")
        if getattr(bank, "sat_out", False) and bank.status == "active" and recent:
            reasons.append(f"sat out the last {len(recent)} rounds")
        if (
            budget
            and bank.epsilon_signed is not None
            and bank.epsilon_signed >= NEAR_BUDGET * budget
        ):
            reasons.append(
                f"privacy budget nearly spent: ε {bank.epsilon_signed:.2f} of {budget:g}"
            )
        expires = bank.previous_credential_expires_at
        if expires is not None and expires > now:
            reasons.append(f"old credential still valid until {expires:%Y-%m-%d %H:%M} UTC")
        if bank.status == "active" and not bank.signing_public_key:
            reasons.append("no signing key registered")
        if bank.slug in flagged:
            reasons.append(f"upload refused lately: {flagged[bank.slug] or 'no reason given'}")
        rows.append(AttentionRow(bank, reasons))
    return rows

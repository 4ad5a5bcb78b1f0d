"""Reads behind the portal's pages. Each returns what a page shows in a fixed number of queries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.models import AuditEvent
from consortium.members.models import Bank, BankStatus
from consortium.portal.charts import Series, metric_series
from consortium.portal.models import BankRepresentative
from consortium.rounds.models import (
    KeyEpoch,
    MetricReport,
    Round,
    RoundPolicy,
    RoundState,
    Submission,
)
from he.signing import update_message, verify

CHART_WINDOW = 50  # rounds a convergence plot shows, up to the round in view
MEAN_LABEL = "consortium mean (self-reported)"
EPSILON_MAX_LABEL = "highest ε of any bank"

# --- banks ---------------------------------------------------------------------------------


def bank_table() -> QuerySet[Bank]:
    """Banks with the last round each submitted to and that round's key epoch.

    The key epoch of a bank's newest accepted update is the best evidence the portal has
    of which consortium key the bank holds (it cannot see the key itself).
    """
    newest = Submission.objects.filter(bank=OuterRef("pk")).order_by("-round__number")
    return Bank.objects.annotate(
        last_round=Subquery(newest.values("round__number")[:1]),
        key_epoch_in_use=Subquery(newest.values("round__key_epoch__number")[:1]),
    ).order_by("slug")


def bank_status_counts() -> dict[str, int]:
    counts = dict(Bank.objects.values_list("status").annotate(n=Count("id")).order_by())
    return {value: counts.get(value, 0) for value in BankStatus.values}


def bank_by_slug(slug: str) -> Bank | None:
    return Bank.objects.filter(slug=slug).first()


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
    subs = Submission.objects.filter(bank=bank).aggregate(
        n=Count("id"), first=Min("round__number"), last=Max("round__number")
    )
    reports = MetricReport.objects.filter(bank=bank).count()
    rotated = (
        AuditEvent.objects.filter(
            action="bank.credential_rotated", object_type="members.bank", object_id=str(bank.pk)
        )
        .order_by("-seq")
        .values_list("created_at", flat=True)
        .first()
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


def bank_participation(bank: Bank) -> QuerySet[Round]:
    """Every round since the bank joined, and any earlier one it took part in, newest first."""
    took_part = Exists(Submission.objects.filter(round=OuterRef("pk"), bank=bank))
    return (
        Round.objects.filter(Q(opened_at__gte=bank.created_at) | took_part)
        .select_related("policy")
        .order_by("-number")
    )


@dataclass(frozen=True)
class ParticipationRow:
    round: Round
    submission: Submission | None
    metrics: dict[str, Any] | None


def participation_rows(bank: Bank, rounds: Sequence[Round]) -> list[ParticipationRow]:
    """Join one page of rounds with this bank's submissions and reports (two queries)."""
    ids = [r.pk for r in rounds]
    subs = {s.round_id: s for s in Submission.objects.filter(bank=bank, round_id__in=ids)}
    reports = dict(
        MetricReport.objects.filter(bank=bank, round_id__in=ids).values_list("round_id", "metrics")
    )
    return [ParticipationRow(r, subs.get(r.pk), reports.get(r.pk)) for r in rounds]


def bank_events(bank: Bank, limit: int = 10) -> list[AuditEvent]:
    """The newest audit events about this bank or made by its node."""
    return list(
        AuditEvent.objects.filter(
            Q(object_type="members.bank", object_id=str(bank.pk)) | Q(actor=f"bank:{bank.slug}")
        ).order_by("-seq")[:limit]
    )


# --- rounds --------------------------------------------------------------------------------


def round_table() -> QuerySet[Round]:
    """Rounds with their update count and bytes uploaded, newest first.

    Counted in subqueries rather than with GROUP BY: grouping would sort every round row
    with its JSON snapshot, which is slow over a long history.
    """
    per_round = Submission.objects.filter(round=OuterRef("pk")).order_by().values("round")
    return (
        Round.objects.select_related("policy")
        .defer("policy_snapshot", "manifest")
        .annotate(
            submission_count=Coalesce(Subquery(per_round.annotate(n=Count("id")).values("n")), 0),
            upload_bytes=Subquery(per_round.annotate(b=Sum("size_bytes")).values("b")),
        )
        .order_by("-number")
    )


def round_by_number(number: int) -> Round | None:
    return (
        Round.objects.select_related("policy", "key_epoch", "base_round")
        .defer("key_epoch__public_context")
        .filter(number=number)
        .first()
    )


def round_in_flight() -> Round | None:
    return (
        Round.objects.select_related("policy")
        .filter(state__in=[RoundState.OPEN, RoundState.AGGREGATING])
        .first()
    )


def round_last_closed() -> Round | None:
    return (
        Round.objects.filter(state__in=[RoundState.PUBLISHED, RoundState.FAILED])
        .order_by("-number")
        .first()
    )


def key_epoch_current() -> KeyEpoch | None:
    # The public context is large and no page shows it.
    return KeyEpoch.objects.filter(active=True).defer("public_context").order_by("-number").first()


def rounds_failed_recent(limit: int = 5) -> list[Round]:
    return list(Round.objects.filter(state=RoundState.FAILED).order_by("-number")[:limit])


def uploads_rejected_recent(limit: int = 10) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="update.rejected").order_by("-seq")[:limit])


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
    submitted = list(rnd.submissions.select_related("bank").order_by("received_at"))
    missing = list(
        Bank.objects.filter(status=BankStatus.ACTIVE)
        .exclude(submissions__round=rnd)
        .order_by("slug")
    )
    return Progress(rnd, submitted, missing)


@dataclass(frozen=True)
class SubmissionRow:
    """An accepted update as the round page shows it, with its signature checked again."""

    submission: Submission
    signature_ok: bool
    key_still_current: bool
    in_manifest: bool


def submission_rows(rnd: Round) -> list[SubmissionRow]:
    """Re-verify every stored signature with the key that verified it at upload time."""
    manifest = {(i.get("bank"), i.get("digest")) for i in rnd.manifest.get("inputs", [])}
    rows = []
    for sub in rnd.submissions.select_related("bank").order_by("bank__slug"):
        message = update_message(rnd.number, sub.bank.slug, sub.digest)
        rows.append(
            SubmissionRow(
                submission=sub,
                signature_ok=verify(sub.signing_public_key, message, sub.signature),
                key_still_current=sub.signing_public_key == sub.bank.signing_public_key,
                in_manifest=(sub.bank.slug, sub.digest) in manifest,
            )
        )
    return rows


def round_reports(rnd: Round) -> list[MetricReport]:
    return list(rnd.metric_reports.select_related("bank").order_by("bank__slug"))


def auprc_means(round_ids: Iterable[int]) -> dict[int, float]:
    """Mean self-reported AUPRC per round, for one page of rounds (one query)."""
    values: dict[int, list[float]] = defaultdict(list)
    for round_id, metrics in MetricReport.objects.filter(round_id__in=list(round_ids)).values_list(
        "round_id", "metrics"
    ):
        value = metrics.get("auprc") if isinstance(metrics, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            values[round_id].append(float(value))
    return {k: sum(v) / len(v) for k, v in values.items()}


# --- convergence plots -------------------------------------------------------------------------


@dataclass(frozen=True)
class Convergence:
    """The series of the two plots: AUPRC per round, and ε per round when banks report it."""

    auprc: list[Series] = field(default_factory=list)
    epsilon: list[Series] = field(default_factory=list)
    first_round: int | None = None
    last_round: int | None = None


def convergence(
    *, up_to: int | None = None, bank: Bank | None = None, with_consortium: bool = True
) -> Convergence:
    """Metrics of the last ``CHART_WINDOW`` published rounds up to round ``up_to``.

    With ``bank``, only that bank's line is kept, plus the consortium line when
    ``with_consortium`` (a bank's representative does not see other banks' figures).
    """
    published = Round.objects.filter(state=RoundState.PUBLISHED)
    if up_to is not None:
        published = published.filter(number__lte=up_to)
    numbers = list(published.order_by("-number").values_list("number", flat=True)[:CHART_WINDOW])
    if not numbers:
        return Convergence()
    reports = MetricReport.objects.filter(round__number__in=numbers)
    if bank is not None and not with_consortium:
        reports = reports.filter(bank=bank)
    rows = list(reports.values_list("round__number", "bank__slug", "metrics"))
    auprc = metric_series(rows, "auprc", overall="mean", overall_name=MEAN_LABEL)
    epsilon = metric_series(rows, "epsilon", overall="max", overall_name=EPSILON_MAX_LABEL)
    if bank is not None:
        keep = {bank.slug, MEAN_LABEL, EPSILON_MAX_LABEL} if with_consortium else {bank.slug}
        auprc = [s for s in auprc if s.name in keep]
        epsilon = [s for s in epsilon if s.name in keep]
    return Convergence(auprc, epsilon, min(numbers), max(numbers))


# --- policies ------------------------------------------------------------------------------


def policy_table() -> QuerySet[RoundPolicy]:
    return RoundPolicy.objects.annotate(round_count=Count("rounds")).order_by("name", "-version")


def policy_by_pk(pk: int) -> RoundPolicy | None:
    return RoundPolicy.objects.annotate(round_count=Count("rounds")).filter(pk=pk).first()


def policy_versions(policy: RoundPolicy) -> list[RoundPolicy]:
    return list(
        RoundPolicy.objects.filter(name=policy.name)
        .annotate(round_count=Count("rounds"))
        .order_by("-version")
    )


# --- audit ---------------------------------------------------------------------------------


def audit_events(
    *,
    action: str = "",
    actor: str = "",
    object_type: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.order_by("-seq")
    if action:
        events = events.filter(action=action)
    if actor:
        events = events.filter(actor__icontains=actor)
    if object_type:
        events = events.filter(object_type=object_type)
    if since is not None:
        events = events.filter(created_at__gte=since)
    if until is not None:
        events = events.filter(created_at__lt=until)
    return events


def audit_actions() -> list[str]:
    return list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct())


def audit_object_types() -> list[str]:
    return list(
        AuditEvent.objects.exclude(object_type="")
        .order_by("object_type")
        .values_list("object_type", flat=True)
        .distinct()
    )

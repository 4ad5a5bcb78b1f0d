"""Reads for policies, key epochs, rounds, submissions and metric reports."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db.models import Count, Exists, Max, Min, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from consortium.governance import selectors as roster
from consortium.members.models import Bank
from consortium.members.selectors import bank_list_active
from consortium.rounds.gate_selectors import rounds_not_adopted
from consortium.rounds.models import (
    IN_FLIGHT_STATES,
    KeyEpoch,
    MetricReport,
    Round,
    RoundKind,
    RoundPolicy,
    RoundState,
    ServedModel,
    Submission,
)
from consortium.rounds.selectors_epsilon import epsilon_newest_signed
from he.params import CkksParams
from protocol import ProtocolError, SketchSpec

log = logging.getLogger(__name__)

# How far back the scheduler looks for a base (or statistics) round to continue from.
BASE_CANDIDATES = 20

# --- rounds --------------------------------------------------------------------------------


def round_list() -> QuerySet[Round]:
    # Nodes poll these rows many times a second: leave the public contexts (~230 KB each)
    # and the joined rounds' JSON behind; code that needs a context loads it on access.
    return Round.objects.select_related(
        "key_epoch", "policy", "base_round__key_epoch", "stats_round", "candidate_round"
    ).defer(
        "key_epoch__public_context",
        "base_round__key_epoch__public_context",
        "base_round__policy_snapshot",
        "base_round__manifest",
        "stats_round__policy_snapshot",
        "stats_round__manifest",
        "candidate_round__policy_snapshot",
        "candidate_round__manifest",
    )


def round_list_with_counts() -> QuerySet[Round]:
    # An aggregate annotation drops Meta.ordering: order explicitly, newest first.
    return round_list().annotate(submission_count=Count("submissions")).order_by("-number")


def round_in_flight() -> Round | None:
    return round_list().filter(state__in=IN_FLIGHT_STATES).first()


def round_get(number: int) -> Round | None:
    return round_list().filter(number=number).first()


def round_numbers_aggregating() -> list[int]:
    return list(Round.objects.filter(state=RoundState.AGGREGATING).values_list("number", flat=True))


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


def round_detail(number: int) -> Round | None:
    """A round with its policy, key epoch and base round, for the round's page."""
    return (
        Round.objects.select_related("policy", "key_epoch", "base_round", "candidate_round")
        .defer("key_epoch__public_context")
        .filter(number=number)
        .first()
    )


def round_in_flight_with_policy() -> Round | None:
    return Round.objects.select_related("policy").filter(state__in=IN_FLIGHT_STATES).first()


def round_last_closed() -> Round | None:
    return (
        Round.objects.filter(state__in=[RoundState.PUBLISHED, RoundState.FAILED])
        .order_by("-number")
        .first()
    )


def round_list_failed_recent(limit: int = 5) -> list[Round]:
    return list(Round.objects.filter(state=RoundState.FAILED).order_by("-number")[:limit])


def round_list_for_bank(bank: Bank) -> QuerySet[Round]:
    """Every round since the bank joined, and any earlier one it took part in, newest first."""
    took_part = Exists(Submission.objects.filter(round=OuterRef("pk"), bank=bank))
    return (
        Round.objects.filter(Q(opened_at__gte=bank.created_at) | took_part)
        .select_related("policy")
        .order_by("-number")
    )


def round_numbers_published(
    *, up_to: int | None, limit: int, since: int | None = None
) -> list[int]:
    """The newest ``limit`` published round numbers from ``since`` up to ``up_to``, newest
    first (either bound open when None)."""
    published = Round.objects.filter(state=RoundState.PUBLISHED)
    if since is not None:
        published = published.filter(number__gte=since)
    if up_to is not None:
        published = published.filter(number__lte=up_to)
    return list(published.order_by("-number").values_list("number", flat=True)[:limit])


def round_stats_for(policy: RoundPolicy, epoch: KeyEpoch) -> Round | None:
    """The newest undisputed published statistics round usable under this policy and epoch.

    A disputed one is passed over, so the scheduler opens a fresh statistics round rather
    than normalise with moments the banks objected to.
    """
    candidates = Round.objects.filter(
        kind=RoundKind.STATISTICS,
        state=RoundState.PUBLISHED,
        key_epoch=epoch,
        vector_length=policy.stats_vector_length,
    ).order_by("-number")[:BASE_CANDIDATES]
    return _undisputed(list(candidates))


def round_sketch_for(policy: RoundPolicy, epoch: KeyEpoch) -> Round | None:
    """The newest undisputed published sketch round of this policy's spec under ``epoch``.

    The key epoch matters twice: the members decrypt under it, and the sketch's keyed hash
    is derived from its integrity key, so a sketch of another epoch hashes accounts apart.
    """
    length = policy.sketch_vector_length
    if length is None:  # the policy asks for no sketches
        return None
    candidates = Round.objects.filter(
        kind=RoundKind.SKETCH, state=RoundState.PUBLISHED, key_epoch=epoch, vector_length=length
    ).order_by("-number")[:BASE_CANDIDATES]
    spec = policy.sketch_spec
    same = [r for r in candidates if _snapshot_spec(r) == spec]
    return _undisputed(same)


def _snapshot_spec(rnd: Round) -> SketchSpec | None:
    """The sketch spec a round's snapshot holds, decoded: ``{"noise_split": 1, ...}`` as
    entered and ``{...}`` as a snapshot writes it are one spec."""
    raw = rnd.policy_snapshot.get("counterparty_sketch")
    try:
        return SketchSpec.from_dict(raw) if raw is not None else None
    except ProtocolError:  # a snapshot no node could run: not this policy's sketch
        return None


def round_base_for(policy: RoundPolicy) -> Round | None:
    """The newest undisputed published training round this policy can continue from.

    A gated round is a base only once the banks' verified verdicts adopted it: rejected
    and undecided candidates are passed over (derived each time, like disputes).
    """
    # Any key epoch: after a key rotation, members holding the previous key decrypt the
    # last aggregate made under it, and training continues instead of starting over.
    candidates = Round.objects.filter(
        kind=RoundKind.TRAINING,
        state=RoundState.PUBLISHED,
        vector_length=policy.vector_length,
    ).order_by("-number")[:BASE_CANDIDATES]
    usable = [r for r in candidates if r.policy_snapshot.get("model_spec") == policy.model_spec]
    not_adopted = rounds_not_adopted(usable)
    return _undisputed([r for r in usable if r.number not in not_adopted])


def round_is_disputed(rnd: Round) -> bool:
    """True while the banks' signed objections dispute ``rnd`` and no clearance lifts it."""
    return roster.round_is_disputed(rnd.number)


def _undisputed(rounds: list[Round]) -> Round | None:
    """The first of ``rounds`` (newest first) that the banks have not disputed.

    Derived from the signed objections each time (``roster.rounds_disputed``): nothing
    the operator stores or deletes as a flag can make a disputed round a base again.
    """
    disputed = roster.rounds_disputed(r.number for r in rounds)
    return next((r for r in rounds if r.number not in disputed), None)


# --- key epochs ----------------------------------------------------------------------------


def key_epoch_current() -> KeyEpoch | None:
    return KeyEpoch.objects.filter(active=True).order_by("-number").first()


def key_epoch_current_without_context() -> KeyEpoch | None:
    # The public context is large and no page shows it.
    return KeyEpoch.objects.filter(active=True).defer("public_context").order_by("-number").first()


def key_epoch_list() -> QuerySet[KeyEpoch]:
    """Every key epoch, newest first, without the (large) public contexts."""
    return KeyEpoch.objects.defer("public_context").order_by("-number")


# --- policies ------------------------------------------------------------------------------


def policy_list() -> QuerySet[RoundPolicy]:
    return RoundPolicy.objects.all()


def policy_get(pk: int) -> RoundPolicy | None:
    return RoundPolicy.objects.filter(pk=pk).first()


def policy_get_by_version(name: str, version: int) -> RoundPolicy | None:
    return RoundPolicy.objects.filter(name=name, version=version).first()


def policy_version_numbers(name: str) -> list[int]:
    """The versions a policy name has, oldest first (empty for an unknown name)."""
    return list(
        RoundPolicy.objects.filter(name=name).order_by("version").values_list("version", flat=True)
    )


def _with_round_counts(policies: QuerySet[RoundPolicy]) -> QuerySet[RoundPolicy]:
    """``round_count``: every round a version ran; ``training_count``: what its ``max_rounds``
    counts (published training rounds; the statistics and evaluation rounds do not)."""
    trained = Q(rounds__kind=RoundKind.TRAINING, rounds__state=RoundState.PUBLISHED)
    return policies.annotate(
        round_count=Count("rounds"), training_count=Count("rounds", filter=trained)
    )


def policy_table() -> QuerySet[RoundPolicy]:
    return _with_round_counts(RoundPolicy.objects.all()).order_by("name", "-version")


def policy_by_pk(pk: int) -> RoundPolicy | None:
    return _with_round_counts(RoundPolicy.objects.filter(pk=pk)).first()


def policy_versions(policy: RoundPolicy) -> list[RoundPolicy]:
    return list(
        _with_round_counts(RoundPolicy.objects.filter(name=policy.name)).order_by("-version")
    )


def policy_and_epoch_next() -> tuple[RoundPolicy, KeyEpoch] | None:
    """The active policy and key epoch, or None if either is missing or they disagree."""
    policy = RoundPolicy.objects.filter(active=True).order_by("-created_at").first()
    epoch = KeyEpoch.objects.filter(active=True).order_by("-number").first()
    if policy is None or epoch is None:
        return None
    if refusal := roster.policy_refusal(policy) or roster.key_epoch_refusal(epoch.fingerprint):
        log.warning("no round opened: %s", refusal)  # roster: approved policy and epoch only
        return None
    if CkksParams.from_dict(policy.ckks_params) != CkksParams.from_dict(epoch.ckks_params):
        log.warning("active policy %s and key epoch %s disagree on CKKS parameters", policy, epoch)
        return None
    return policy, epoch


# --- submissions ---------------------------------------------------------------------------


def submission_get(rnd: Round, bank: Bank) -> Submission | None:
    return Submission.objects.filter(round=rnd, bank=bank).first()


def submission_count(rnd: Round) -> int:
    return rnd.submissions.count()


def submission_bank_ids(rnd: Round) -> set[int]:
    return set(rnd.submissions.values_list("bank_id", flat=True))


def submission_list_for_round(
    rnd: Round, *, bank: Bank | None = None, order_by: str = "bank__slug"
) -> list[Submission]:
    """A round's submissions with their banks, or only ``bank``'s when given."""
    submissions = rnd.submissions.select_related("bank").order_by(order_by)
    if bank is not None:
        submissions = submissions.filter(bank=bank)
    return list(submissions)


def submission_list_for_bank(bank: Bank, round_ids: Iterable[int]) -> dict[int, Submission]:
    """This bank's submissions to the given rounds, by round id (one query)."""
    return {s.round_id: s for s in Submission.objects.filter(bank=bank, round_id__in=round_ids)}


def submission_totals_for_bank(bank: Bank) -> dict[str, Any]:
    """How many updates a bank sent, and the first and last round it sent one to."""
    return Submission.objects.filter(bank=bank).aggregate(
        n=Count("id"), first=Min("round__number"), last=Max("round__number")
    )


def bank_table() -> QuerySet[Bank]:
    """Banks with the last round each submitted to, that round's key epoch, and the newest ε
    each signed (``selectors_epsilon``: the figure the budget check uses).

    The key epoch of a bank's newest accepted update is the best evidence the portal has
    of which consortium key the bank holds (it cannot see the key itself).
    """
    newest = Submission.objects.filter(bank=OuterRef("pk")).order_by("-round__number")
    return Bank.objects.annotate(
        last_round=Subquery(newest.values("round__number")[:1]),
        key_epoch_in_use=Subquery(newest.values("round__key_epoch__number")[:1]),
        epsilon_signed=epsilon_newest_signed(),
    ).order_by("slug")


def bank_list_missing_from(rnd: Round) -> list[Bank]:
    """Active banks that have not submitted to ``rnd`` yet."""
    return list(bank_list_active().exclude(submissions__round=rnd).order_by("slug"))


# --- metric reports ------------------------------------------------------------------------


def metric_report_list_for_round(rnd: Round) -> list[MetricReport]:
    return list(rnd.metric_reports.select_related("bank").order_by("bank__slug"))


def served_model_for_bank(bank: Bank) -> ServedModel | None:
    """The model version ``bank`` last said its node serves (None: it never reported one)."""
    return ServedModel.objects.filter(bank=bank).select_related("round").first()


def metric_report_count_for_bank(bank: Bank) -> int:
    return MetricReport.objects.filter(bank=bank).count()


def metric_report_metrics_for_bank(bank: Bank, round_ids: Iterable[int]) -> dict[int, Any]:
    """This bank's reported metrics for the given rounds, by round id (one query)."""
    return dict(
        MetricReport.objects.filter(bank=bank, round_id__in=round_ids).values_list(
            "round_id", "metrics"
        )
    )


def metric_report_metrics_for_rounds(round_ids: Iterable[int]) -> list[tuple[int, Any]]:
    """``(round id, metrics)`` of every report on the given rounds (one query)."""
    return list(
        MetricReport.objects.filter(round_id__in=list(round_ids)).values_list("round_id", "metrics")
    )


def metric_report_rows(numbers: list[int], bank: Bank | None = None) -> list[tuple[int, str, Any]]:
    """``(round number, bank slug, metrics)`` of the reports on these rounds, or one bank's."""
    reports = MetricReport.objects.filter(round__number__in=numbers)
    if bank is not None:
        reports = reports.filter(bank=bank)
    return list(reports.values_list("round__number", "bank__slug", "metrics"))

"""The one source of ε: the cumulative epsilon each bank signed with its upload, and the budget.

The budget check (``submissions``), the scheduler's stop (``selectors_state``) and the audit
report rely on the figure a bank signs with its update (``X-Privacy-Epsilon``, inside the
update signature). Metric reports arrive a round later and may carry another ε of the
bank's own choosing; pages, charts, the exporter and the reports read ε only from here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Max, OuterRef, Subquery

from consortium.members.models import Bank
from consortium.rounds.models import RoundPolicy, Submission


@dataclass(frozen=True)
class EpsilonFigure:
    """A bank's cumulative ε after a round, as it signed it, and that round's budget."""

    round: int
    bank: str
    epsilon: float
    budget: float | None  # the policy version's dp_target_epsilon the round ran under


def epsilon_signed(
    *, rounds: Iterable[int] | None = None, bank: Bank | None = None
) -> list[EpsilonFigure]:
    """The signed figures of these round numbers (all when None), or of one bank (one query)."""
    rows = Submission.objects.filter(epsilon_spent__isnull=False)
    if rounds is not None:
        rows = rows.filter(round__number__in=list(rounds))
    if bank is not None:
        rows = rows.filter(bank=bank)
    values = rows.order_by("round__number", "bank__slug").values_list(
        "round__number", "bank__slug", "epsilon_spent", "round__policy__dp_target_epsilon"
    )
    # epsilon_spent is never None here: the filter above leaves those rows out.
    return [EpsilonFigure(n, slug, float(eps or 0.0), budget) for n, slug, eps, budget in values]


def epsilon_signed_by_round(rounds: Iterable[int]) -> dict[int, dict[str, float]]:
    """``{round number: {bank slug: ε}}`` for these rounds (one query)."""
    out: dict[int, dict[str, float]] = defaultdict(dict)
    for figure in epsilon_signed(rounds=rounds):
        out[figure.round][figure.bank] = figure.epsilon
    return dict(out)


def epsilon_newest_signed() -> Subquery:
    """An annotation for a ``Bank`` queryset: the ε of the bank's newest upload that signed one.

    A subquery, so a page of banks gets its figures in the same query as the banks.
    """
    newest = Submission.objects.filter(bank=OuterRef("pk"), epsilon_spent__isnull=False)
    return Subquery(newest.order_by("-round__number").values("epsilon_spent")[:1])


def epsilon_budget() -> float | None:
    """The active policy's privacy budget per bank over the training (None without DP)."""
    return (
        RoundPolicy.objects.filter(active=True)
        .order_by("-created_at")
        .values_list("dp_target_epsilon", flat=True)
        .first()
    )


def epsilon_highest_signed() -> float | None:
    """The highest cumulative ε any bank has signed with an upload (None: none signed one)."""
    value = Submission.objects.aggregate(top=Max("epsilon_spent"))["top"]
    return float(value) if value is not None else None

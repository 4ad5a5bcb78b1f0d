"""The convergence plots' series: the consortium line with a percentile band, chosen banks'
lines, over the last rounds or any window of rounds (a fixed number of queries)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from consortium.members.models import Bank
from consortium.portal.charts import Band, Reference, Series, metric_series, percentile_band
from consortium.rounds import selectors as rounds_selectors
from consortium.rounds.selectors_epsilon import EpsilonFigure, epsilon_signed

CHART_WINDOW = 50  # rounds a plot shows by default, up to the round in view
WINDOW_MAX = 10_000  # rounds an explicit ?from= window may span
# Rounds a plot reads at most: a longer window is thinned to every k-th round, so 10,000
# rounds of 200 banks cost what 400 do (the reports are read and parsed in Python).
POINTS_MAX = 400
FEW_BANKS = 7  # up to this many banks, each gets its own coloured line as before
SELECTED_MAX = 7  # banks a person may pick (?banks=): one palette colour each
MEAN_LABEL = "consortium mean (self-reported)"
EPSILON_MAX_LABEL = "highest ε any bank signed"
BAND_LABEL = "10th to 90th percentile of the banks"


@dataclass(frozen=True)
class ChartWindow:
    """What a page asks to plot: rounds ``first``..``last`` (either open) and chosen banks."""

    first: int | None = None
    last: int | None = None
    banks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Convergence:
    """The series of the two plots: AUPRC per round (self-reported), and the ε each bank
    signed with its upload (``selectors_epsilon``) against the budget when DP is on."""

    auprc: list[Series] = field(default_factory=list)
    epsilon: list[Series] = field(default_factory=list)
    first_round: int | None = None
    last_round: int | None = None
    epsilon_budget: Reference | None = None
    auprc_band: Band | None = None
    epsilon_band: Band | None = None
    banks_reporting: int = 0
    step: int = 1  # every step-th published round of the window is drawn


def unknown_banks(slugs: Sequence[str]) -> list[str]:
    """The slugs among ``slugs`` that name no bank (one query)."""
    known = set(Bank.objects.filter(slug__in=list(slugs)).values_list("slug", flat=True))
    return [s for s in slugs if s not in known]


def convergence(
    *,
    up_to: int | None = None,
    bank: Bank | None = None,
    with_consortium: bool = True,
    window: ChartWindow | None = None,
) -> Convergence:
    """Metrics of the published rounds in ``window``, by default the last ``CHART_WINDOW``
    up to round ``up_to``.

    With ``bank``, only that bank's line is kept, plus the consortium line when
    ``with_consortium`` (a bank's representative does not see other banks' figures).
    Otherwise, beyond ``FEW_BANKS`` banks, the banks are drawn as a percentile band around
    the consortium line, plus the lines of the banks the window names.
    """
    window = window or ChartWindow()
    in_window = _round_numbers(up_to, window)
    if not in_window:
        return Convergence()
    numbers, step = thin_rounds(in_window)
    span = (min(in_window), max(in_window))  # the window's rounds, whichever are drawn
    only = bank if not with_consortium else None
    rows = rounds_selectors.metric_report_rows(numbers, only)
    auprc = metric_series(rows, "auprc", overall="mean", overall_name=MEAN_LABEL)
    figures = epsilon_signed(rounds=numbers, bank=only)
    signed = [(f.round, f.bank, {"epsilon": f.epsilon}) for f in figures]
    epsilon = metric_series(signed, "epsilon", overall="max", overall_name=EPSILON_MAX_LABEL)
    reporting = len({slug for _, slug, _ in rows})
    if bank is not None:
        keep = {bank.slug, MEAN_LABEL, EPSILON_MAX_LABEL} if with_consortium else {bank.slug}
        auprc = [s for s in auprc if s.name in keep]
        epsilon = [s for s in epsilon if s.name in keep]
        budget = _budget_line(figures)
        return Convergence(auprc, epsilon, *span, budget, None, None, reporting, step)
    auprc, auprc_band = _focus(auprc, window.banks)
    epsilon, epsilon_band = _focus(epsilon, window.banks)
    budget = _budget_line(figures)
    return Convergence(auprc, epsilon, *span, budget, auprc_band, epsilon_band, reporting, step)


def _round_numbers(up_to: int | None, window: ChartWindow) -> list[int]:
    last = window.last if window.last is not None else up_to
    if window.first is None:
        return rounds_selectors.round_numbers_published(up_to=last, limit=CHART_WINDOW)
    return rounds_selectors.round_numbers_published(
        up_to=last, limit=WINDOW_MAX, since=window.first
    )


def thin_rounds(numbers: list[int]) -> tuple[list[int], int]:
    """At most ``POINTS_MAX`` of ``numbers`` (newest first), evenly spaced, the newest kept."""
    step = -(-len(numbers) // POINTS_MAX)  # ceiling division
    return (numbers[::step], step) if step > 1 else (numbers, 1)


def _focus(series: list[Series], selected: Sequence[str]) -> tuple[list[Series], Band | None]:
    """A few banks: every line as is. Many, or some chosen: the band, the chosen lines and
    the consortium line (195 grey lines read as one grey smear)."""
    lines = [s for s in series if not s.emphasis]
    if len(lines) <= FEW_BANKS and not selected:
        return series, None
    chosen = [s for s in lines if s.name in selected]
    return [*chosen, *(s for s in series if s.emphasis)], percentile_band(lines, BAND_LABEL)


def _budget_line(figures: list[EpsilonFigure]) -> Reference | None:
    """The budget of the newest round in view that had one: the line ε must stay under."""
    budget = next((f.budget for f in reversed(figures) if f.budget is not None), None)
    return Reference(f"budget ε = {budget:g}", budget) if budget is not None else None

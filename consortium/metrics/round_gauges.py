"""Scrape-time gauges for dashboards and alerts: the round's expected and minimum updates,
each bank's signed privacy spend against the budget, why the consortium is halted, the
quality the banks reported for the newest model, and the blob volume's free space."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily, Metric

from consortium.governance import selectors as roster
from consortium.members.selectors import bank_list_active
from consortium.rounds.models import (
    IN_FLIGHT_STATES,
    MetricReport,
    Round,
    RoundKind,
    RoundState,
)
from consortium.rounds.selectors_epsilon import epsilon_budget, epsilon_newest_signed
from consortium.rounds.selectors_state import ConsortiumStatus, HaltCode, consortium_state
from governance import RosterError

log = logging.getLogger(__name__)


def in_flight_expectations() -> Iterator[Metric]:
    """How many updates the round in flight expects, how many it needs to publish, and which
    expected banks have not sent theirs yet."""
    rnd = (
        Round.objects.filter(state__in=IN_FLIGHT_STATES)
        .only("cohort", "threshold", "policy_snapshot")
        .first()
    )
    if rnd is None:
        return  # absent, like the other in-flight gauges
    try:
        floor = roster.roster_min_banks()
        # A v2 round fixed its cohort when it opened; a v1 round waits for every active member.
        if rnd.masked:
            expected = sorted(rnd.cohort)
        else:
            members = roster.roster_filter_active(bank_list_active())
            expected = sorted(members.values_list("slug", flat=True))
    except RosterError as exc:
        # A stored roster that no longer verifies must not take the whole scrape down; the
        # scheduler refuses to act on it and says so in its log.
        log.warning("metrics: roster does not verify: %s", exc)
        return
    yield GaugeMetricFamily(
        "consortium_round_in_flight_expected_updates",
        "Updates the round in flight waits for: its cohort (secure aggregation v2) or the "
        "active roster members (absent when no round is in flight).",
        value=len(expected),
    )
    yield GaugeMetricFamily(
        "consortium_round_in_flight_min_updates",
        "Fewest updates the round in flight publishes with at its deadline: the higher of the "
        "policy's and the roster's min_banks (absent when no round is in flight).",
        value=max(int(rnd.policy_snapshot.get("min_banks", 0)), floor),
    )
    yield _missing_banks(rnd, expected)


def _missing_banks(rnd: Round, expected: list[str]) -> Metric:
    """1 per expected bank without an accepted update yet: who the stall alert names."""
    family = GaugeMetricFamily(
        "consortium_round_in_flight_missing_bank",
        "1 for each bank the round in flight waits for that has not sent its update yet "
        "(no series once it has, or when no round is in flight).",
        labels=["bank"],
    )
    sent = set(rnd.submissions.values_list("bank__slug", flat=True))
    for slug in expected:
        if slug not in sent:
            family.add_metric([slug], 1)
    return family


def privacy() -> Iterator[Metric]:
    """Each active bank's cumulative epsilon as it signed it with its newest DP upload, and
    the active policy's budget: the figure the budget check uses, not a self-report."""
    rows = bank_list_active().annotate(eps=epsilon_newest_signed())
    spent = GaugeMetricFamily(
        "consortium_bank_privacy_epsilon",
        "Per active bank, the cumulative differential-privacy epsilon it signed with its newest "
        "upload under a DP policy (absent for a bank that never sent one).",
        labels=["bank"],
    )
    for slug, eps in rows.order_by("slug").values_list("slug", "eps"):
        if eps is not None:
            spent.add_metric([slug], eps)
    yield spent
    budget = epsilon_budget()
    if budget is not None:
        yield GaugeMetricFamily(
            "consortium_privacy_epsilon_budget",
            "The active policy's privacy budget (dp_target_epsilon) per bank over the whole "
            "training (absent without an active DP policy).",
            value=budget,
        )


def halted() -> Metric:
    """One 0/1 series per halt reason: 1 while no round is in flight and that reason holds."""
    state = consortium_state()
    family = GaugeMetricFamily(
        "consortium_halted",
        "1 when no round is in flight and the scheduler will not open one for this reason "
        "(no_policy, max_rounds, consecutive_failures, privacy_budget, too_few_members, ...), "
        "else 0; the portal's banner and manage.py consortium_status say why in words.",
        labels=["reason"],
    )
    holding = set(state.codes) if state.status == ConsortiumStatus.HALTED else set()
    for code in HaltCode:
        family.add_metric([str(code)], 1 if code in holding else 0)
    return family


def reported_quality() -> Iterator[Metric]:
    """Each bank's AUPRC for the newest published training round any bank reported on, and
    that round's number: the consortium's quality as the banks measured it (self-reported,
    on their own held-out data; the dashboard shows its mean, spread and weakest banks).
    Both have no sample until a bank reports."""
    reports = MetricReport.objects.filter(
        round__kind=RoundKind.TRAINING, round__state=RoundState.PUBLISHED
    )
    number = reports.order_by("-round__number").values_list("round__number", flat=True).first()
    newest = GaugeMetricFamily(
        "consortium_reported_auprc_round",
        "The newest published training round a bank reported metrics for.",
        labels=[],
    )
    family = GaugeMetricFamily(
        "consortium_bank_reported_auprc",
        "Per bank, the AUPRC it reported for that round's model on its own held-out data "
        "(self-reported; absent for a bank that reported none).",
        labels=["bank"],
    )
    if number is not None:
        newest.add_metric([], number)
        rows = reports.filter(round__number=number).values_list("bank__slug", "metrics")
        for slug, metrics in rows.order_by("bank__slug"):
            value = metrics.get("auprc") if isinstance(metrics, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                family.add_metric([slug], float(value))
    yield newest
    yield family


class BlobStorageCollector:
    """Free and total bytes of the filesystem holding the ciphertexts (CONSORTIUM_BLOB_DIR).

    Read with statvfs at scrape time, so it works on any volume (kubelet's volume stats are
    missing for many ReadWriteMany drivers). Absent when the directory cannot be read.
    """

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            stat = os.statvfs(settings.BLOB_DIR)
        except OSError as exc:
            log.warning("metrics: cannot stat the blob directory: %s", exc)
            return
        yield GaugeMetricFamily(
            "consortium_blob_storage_free_bytes",
            "Bytes still available to the portal on the blob volume (CONSORTIUM_BLOB_DIR).",
            value=stat.f_bavail * stat.f_frsize,
        )
        yield GaugeMetricFamily(
            "consortium_blob_storage_capacity_bytes",
            "Size in bytes of the filesystem holding the blob volume.",
            value=stat.f_blocks * stat.f_frsize,
        )

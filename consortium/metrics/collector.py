"""The scrape-time collector: gauges read from the database, and the web tier's exposition."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from django.db import DatabaseError
from django.db.models import Count
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric

from audit.selectors import audit_chain_length
from consortium.members.models import Bank, BankStatus
from consortium.metrics.definitions import DB_ERRORS, SCHEDULER_ONLY
from consortium.metrics.round_gauges import (
    BlobStorageCollector,
    halted,
    in_flight_expectations,
    privacy,
    reported_quality,
)
from consortium.rounds.models import IN_FLIGHT_STATES, Round, RoundState, Submission

log = logging.getLogger(__name__)

# How far back a bank's run of missed rounds is followed.
MISSED_ROUNDS_WINDOW = 50


class DatabaseCollector:
    """Gauges computed from the database on every scrape (cheap aggregate queries).

    A scrape while the database is away still succeeds: it reports
    ``consortium_database_up 0`` and nothing else from here.
    """

    def describe(self) -> list[Metric]:
        return []  # registering must not query the database

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "consortium_database_up",
            "1 when the scrape-time database queries succeeded, else 0.",
        )
        try:
            families = list(self._families())
        except DatabaseError as exc:
            log.warning("metrics: database unavailable: %s", exc)
            DB_ERRORS.labels("collector").inc()
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        rounds = GaugeMetricFamily(
            "consortium_rounds", "Rounds in the database, by state.", labels=["state"]
        )
        counts = dict(Round.objects.order_by().values_list("state").annotate(n=Count("pk")))
        for state in RoundState.values:
            rounds.add_metric([state], counts.get(state, 0))
        yield rounds

        banks = GaugeMetricFamily("consortium_banks", "Member banks, by status.", labels=["status"])
        counts = dict(Bank.objects.order_by().values_list("status").annotate(n=Count("pk")))
        for status in BankStatus.values:
            banks.add_metric([status], counts.get(status, 0))
        yield banks

        length = audit_chain_length()
        yield GaugeMetricFamily(
            "consortium_audit_chain_length",
            "Events in the audit chain (the sequence number of its head).",
            value=length,
        )
        yield from self._in_flight(Round, IN_FLIGHT_STATES)
        yield from in_flight_expectations()
        yield self._missed(Round, RoundState, Bank, BankStatus)
        yield from privacy()
        yield halted()
        yield from reported_quality()

    @staticmethod
    def _in_flight(round_model: Any, in_flight: Any) -> Iterator[Metric]:
        rnd = (
            round_model.objects.filter(state__in=in_flight)
            .annotate(n=Count("submissions"))
            .values("number", "opened_at", "deadline_at", "n")
            .first()
        )
        number = GaugeMetricFamily(
            "consortium_round_in_flight_number",
            "Number of the round in flight (sharing, open, unmasking or aggregating); "
            "0 when none is.",
            value=rnd["number"] if rnd else 0,
        )
        yield number
        if rnd is None:
            return  # no deadline to report: the series is absent, alerts stay quiet
        yield GaugeMetricFamily(
            "consortium_round_in_flight_deadline_timestamp_seconds",
            "Unix time of the deadline of the round in flight (absent when none is).",
            value=rnd["deadline_at"].timestamp(),
        )
        yield GaugeMetricFamily(
            "consortium_round_in_flight_opened_timestamp_seconds",
            "Unix time the round in flight opened (absent when none is).",
            value=rnd["opened_at"].timestamp(),
        )
        yield GaugeMetricFamily(
            "consortium_round_in_flight_submissions",
            "Updates accepted so far for the round in flight (absent when none is).",
            value=rnd["n"],
        )

    @staticmethod
    def _missed(round_model: Any, states: Any, bank_model: Any, bank_states: Any) -> Metric:
        """Per active bank: closed rounds in a row, newest first, without its update."""
        family = GaugeMetricFamily(
            "consortium_bank_missed_rounds",
            "For each active bank, how many of the most recent closed (published or failed) "
            f"rounds in a row it sent no update to, counting only rounds opened after it "
            f"joined (at most {MISSED_ROUNDS_WINDOW}).",
            labels=["bank"],
        )
        closed = list(
            round_model.objects.filter(state__in=[states.PUBLISHED, states.FAILED])
            .order_by("-number")
            .values_list("pk", "opened_at")[:MISSED_ROUNDS_WINDOW]
        )
        submitted: set[tuple[int, int]] = set()
        if closed:
            submitted = set(
                Submission.objects.filter(round_id__in=[pk for pk, _ in closed]).values_list(
                    "round_id", "bank_id"
                )
            )
        active = bank_model.objects.filter(status=bank_states.ACTIVE).values_list(
            "pk", "slug", "created_at"
        )
        for bank_pk, slug, joined in active:
            missed = 0
            for round_pk, opened_at in closed:
                if opened_at < joined or (round_pk, bank_pk) in submitted:
                    break
                missed += 1
            family.add_metric([slug], missed)
        return family


_DB_REGISTRY = CollectorRegistry(auto_describe=False)
_DB_REGISTRY.register(DatabaseCollector())
_DB_REGISTRY.register(BlobStorageCollector())


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _Without:
    """A registry view that leaves out some metric families."""

    def __init__(self, registry: CollectorRegistry, names: frozenset[str]) -> None:
        self.registry, self.names = registry, names

    def collect(self) -> Iterator[Metric]:
        return (m for m in self.registry.collect() if m.name not in self.names)


def exposition() -> bytes:
    """The web tier's metrics (all workers' in multiprocess mode), then the database's."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    web = _Without(registry, SCHEDULER_ONLY)
    return generate_latest(web) + generate_latest(_DB_REGISTRY)

"""Drift metrics of a bank node: the PSI of the newest scored day, read at every scrape.

``bank-node score`` is a separate process from ``bank-node run``, so it records each
scored day's PSI in the state directory (``bank_node.drift_state``) and this collector,
registered by ``run`` beside its metrics server, reads the newest day from there. Until a
day is recorded the families are exported without samples.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bank_node.drift_state import newest_window

FEATURE_PSI = "bank_node_feature_psi"
SCORE_PSI = "bank_node_score_psi"
WINDOW_ROWS = "bank_node_drift_window_rows"
WINDOW_DAY = "bank_node_drift_window_timestamp_seconds"
REFERENCE_ROUND = "bank_node_drift_reference_round"


class DriftCollector(Collector):
    """The newest recorded day's drift, from ``state_dir``'s record, at every collect."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = _families()
        newest = newest_window(self.state_dir)
        if newest is not None:
            day, entry = newest
            for feature, value in sorted(entry["feature_psi"].items()):
                families[FEATURE_PSI].add_metric([feature], float(value))
            families[SCORE_PSI].add_metric([], float(entry["score_psi"]))
            families[WINDOW_ROWS].add_metric([], float(entry["rows"]))
            families[WINDOW_DAY].add_metric([], float(_midnight(day)))
            families[REFERENCE_ROUND].add_metric([], float(entry["reference_round"]))
        yield from families.values()


def _families() -> dict[str, GaugeMetricFamily]:
    return {
        FEATURE_PSI: GaugeMetricFamily(
            FEATURE_PSI,
            "Population stability index of one feature on the newest scored day against the "
            "served model's training split (deciles of the training split; 0.1-0.2 a moderate "
            "shift, above 0.2 a large one).",
            labels=["feature"],
        ),
        SCORE_PSI: GaugeMetricFamily(
            SCORE_PSI,
            "Population stability index of the model's score on the newest scored day against "
            "its scores on the training split (above 0.25: the score distribution moved).",
        ),
        WINDOW_ROWS: GaugeMetricFamily(
            WINDOW_ROWS, "Transactions in the newest scored day the PSI gauges describe."
        ),
        WINDOW_DAY: GaugeMetricFamily(
            WINDOW_DAY, "Unix time of the start (00:00 UTC) of the newest scored day."
        ),
        REFERENCE_ROUND: GaugeMetricFamily(
            REFERENCE_ROUND, "Round of the model whose training split is the PSI reference."
        ),
    }


def _midnight(day: str) -> int:
    return calendar.timegm(date.fromisoformat(day).timetuple())


def watch(state_dir: Path, registry: CollectorRegistry = REGISTRY) -> DriftCollector:
    """Export the drift recorded in ``state_dir`` on ``registry`` (the node's /metrics)."""
    collector = DriftCollector(state_dir)
    registry.register(collector)
    return collector

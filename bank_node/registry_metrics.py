"""Prometheus metrics of the model registry: which version this node serves, and holds.

The served version is read from the registry at every scrape, so a ``bank-node models
promote`` or ``rollback`` run in another process shows at once on the running node's
``/metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from bank_node.config import ConfigError
from bank_node.model_files import promoted_directory
from bank_node.passport import read_passport

log = logging.getLogger(__name__)

VERSIONS_HELD = Counter(
    "bank_node_model_versions_held",
    "Model versions this node stored but did not promote automatically, by reason: "
    "rejected_by_gate, older_than_promoted, local_drop (its AUPRC on this bank's held-out "
    "data fell more than promotion_tolerance below the promoted version's), "
    "no_local_auprc or pinned_by_rollback (a rollback pinned the promoted version until "
    "the next models promote). A version waiting for its gate verdict is not counted.",
    ["reason"],
)


class ServedModelCollector(Collector):
    """``bank_node_served_model_round`` and ``bank_node_served_model_info{version}``."""

    def __init__(self) -> None:
        self.state_dir: Path | None = None

    def collect(self) -> Iterator[Metric]:
        served = GaugeMetricFamily(
            "bank_node_served_model_round",
            "Published round of the model version this node serves (models/promoted): the "
            "one bank-node score and serve use (0: none promoted yet; -1: the pointer names "
            "a version the registry does not hold).",
        )
        info = InfoMetricFamily(
            "bank_node_served_model", "The model version this node serves.", labels=["version"]
        )
        number, version = self._served()
        served.add_metric([], number)
        if version is not None:
            info.add_metric([version], {})
        yield served
        yield info

    def _served(self) -> tuple[int, str | None]:
        if self.state_dir is None:
            return 0, None
        try:
            directory, version = promoted_directory(self.state_dir)
            if version is None:
                return 0, None
            return read_passport(directory).round, version
        except (ConfigError, OSError) as exc:
            log.warning("served model: %s", exc)
            return -1, None


SERVED = ServedModelCollector()
REGISTRY.register(SERVED)


def watch(state_dir: Path) -> None:
    """Report the version served from ``state_dir`` (the node's; the last one set wins)."""
    SERVED.state_dir = state_dir


def held(reason: str) -> None:
    VERSIONS_HELD.labels(reason).inc()

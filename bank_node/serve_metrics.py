"""Prometheus metrics of `bank-node serve`: latency, transactions scored, alerts, errors, reloads.

Like the node's own metrics (``bank_node.metrics``) they carry no transaction, account or
score: only counts and timings. Every name starts with ``bank_node_serve_``.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

# Its own registry: the service's /metrics shows the service, not the node metrics that
# modules it shares with `bank-node run` register in the default one.
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# One transaction should take a few milliseconds; a batch of 1000 up to a second.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUEST_SECONDS = Histogram(
    "bank_node_serve_request_duration_seconds",
    "Time from a request's first byte read to its answer written, by path and status class.",
    ["path", "status"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
SCORED = Counter(
    "bank_node_serve_scored",
    "Transactions scored (one per transaction in a batch).",
    registry=REGISTRY,
)
ALERTS = Counter(
    "bank_node_serve_alerts",
    "Scored transactions whose score reached the served model's alert threshold.",
    registry=REGISTRY,
)
ERRORS = Counter(
    "bank_node_serve_errors",
    "Requests refused or failed, by reason: unauthorized, content_type, not_json, too_large, "
    "invalid (a field of a transaction), out_of_order, no_model, not_found, store (the state "
    "file), connection (the client stalled or left mid-request), internal.",
    ["reason"],
    registry=REGISTRY,
)
MODEL_LOADED = Gauge(
    "bank_node_serve_model_loaded",
    "1 while a model is loaded and served, 0 before or without.",
    registry=REGISTRY,
)
MODEL_ROUND = Gauge(
    "bank_node_serve_model_round",
    "Round of the model served (-1: none loaded, or a local-only model).",
    registry=REGISTRY,
)
RELOADS = Counter(
    "bank_node_serve_model_reloads",
    "Model (re)loads by outcome: loaded, or failed (the previous model, if any, stays served).",
    ["outcome"],
    registry=REGISTRY,
)
MODEL_ROUND.set(-1)

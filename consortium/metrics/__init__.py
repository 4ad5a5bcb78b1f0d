"""Prometheus metrics of the portal: definitions, the scrape-time database collector, and
the request middleware, the protected ``/metrics`` view and the scheduler's own endpoint.

One module each: :mod:`.definitions` (the metric objects and label helpers),
:mod:`.collector` (state read at scrape time, and the exposition), :mod:`.middleware`,
:mod:`.views` (``/metrics``), :mod:`.audit_check` (the scheduler's timed chain check) and
:mod:`.scheduler_server`. This package re-exports what the rest of the portal uses, so
``from consortium import metrics; metrics.update_rejected(...)`` keeps working.

Three kinds of numbers, three ways of counting them:

- **Events** (requests, accepted and rejected updates, upload bytes, aggregations) are
  counters and histograms incremented where they happen. Under gunicorn every worker is
  a process of its own, so prometheus-client's multiprocess mode is used whenever
  ``PROMETHEUS_MULTIPROC_DIR`` is set (``consortium/gunicorn.conf.py`` looks after the
  directory): each worker writes its values to files there and ``/metrics`` adds them up.
- **State** (rounds by state, banks by status, audit chain length, the round in flight)
  is read from the database at scrape time by :class:`DatabaseCollector` — a handful of
  COUNT/MAX queries, the same answer whichever worker serves the scrape, and no shared
  state between workers.
- **Scheduler work** (aggregation duration and errors, open-to-publish time, the audit
  chain verification, the last tick) happens in the scheduler, a separate process (a
  separate pod in Kubernetes). It serves its own ``/metrics`` (plus ``/healthz`` and
  ``/readyz``) on ``CONSORTIUM_SCHEDULER_METRICS_PORT``; it must not share the web
  tier's multiprocess directory.

Every metric name starts with ``consortium_``; each one's help text says what it counts.
"""

from consortium.metrics.audit_check import audit_verify_if_due
from consortium.metrics.collector import (
    MISSED_ROUNDS_WINDOW,
    DatabaseCollector,
    exposition,
    multiprocess_dir,
)
from consortium.metrics.definitions import (
    AGGREGATION_ERRORS,
    AGGREGATION_SECONDS,
    AUDIT_VERIFIED,
    AUDIT_VERIFIED_AT,
    AUDIT_VERIFIED_EVENTS,
    DB_ERRORS,
    GATE_DECISIONS,
    GATE_LAST_DECISION,
    HTTP_LATENCY,
    HTTP_REQUESTS,
    LATENCY_BUCKETS,
    OPEN_TO_PUBLISH_SECONDS,
    REJECT_LABELS,
    REJECT_REASONS,
    ROUND_BUCKETS,
    SCHEDULER_LAST_TICK,
    SCHEDULER_ONLY,
    SECAGG_MESSAGES,
    UPDATES_ACCEPTED,
    UPDATES_REJECTED,
    UPLOAD_BYTES,
    gate_decided,
    reject_label,
    round_published,
    secagg_message,
    update_rejected,
)
from consortium.metrics.middleware import RequestMetricsMiddleware, method_label
from consortium.metrics.scheduler_server import health_app, scheduler_serve
from consortium.metrics.views import metrics_view

__all__ = [
    "AGGREGATION_ERRORS",
    "AGGREGATION_SECONDS",
    "AUDIT_VERIFIED",
    "AUDIT_VERIFIED_AT",
    "AUDIT_VERIFIED_EVENTS",
    "DB_ERRORS",
    "GATE_DECISIONS",
    "GATE_LAST_DECISION",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "LATENCY_BUCKETS",
    "MISSED_ROUNDS_WINDOW",
    "OPEN_TO_PUBLISH_SECONDS",
    "REJECT_LABELS",
    "REJECT_REASONS",
    "ROUND_BUCKETS",
    "SCHEDULER_LAST_TICK",
    "SCHEDULER_ONLY",
    "SECAGG_MESSAGES",
    "UPDATES_ACCEPTED",
    "UPDATES_REJECTED",
    "UPLOAD_BYTES",
    "DatabaseCollector",
    "RequestMetricsMiddleware",
    "audit_verify_if_due",
    "exposition",
    "gate_decided",
    "health_app",
    "method_label",
    "metrics_view",
    "multiprocess_dir",
    "reject_label",
    "round_published",
    "scheduler_serve",
    "secagg_message",
    "update_rejected",
]

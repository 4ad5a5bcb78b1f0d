"""The portal's metric objects, their fixed label sets, and small helpers that record events."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# No `*_created` series: Prometheus does not use them and they double the output.
disable_created_metrics()

# Request latencies: API calls take milliseconds, encrypted uploads many seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Aggregation and round lifetimes: seconds to hours.
ROUND_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)

# --- events: web tier -----------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "consortium_http_requests",
    "HTTP requests answered by the portal, by resolved view name ('static' for static "
    "files, 'unresolved' when no route matched), method and status code.",
    ["view", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "consortium_http_request_duration_seconds",
    "Time from the request reaching Django to the response leaving it, by view.",
    ["view"],
    buckets=LATENCY_BUCKETS,
)
UPDATES_ACCEPTED = Counter(
    "consortium_updates_accepted",
    "Encrypted updates accepted and stored (idempotent retries of a stored update are "
    "not counted again).",
)
UPDATES_REJECTED = Counter(
    "consortium_updates_rejected",
    "Uploads refused with a 4xx, by reason (a fixed set: duplicate, round_closed, "
    "deadline, no_signing_key, not_member, missing_headers, privacy_unreported, privacy_budget, "
    "invalid_ciphertext, digest_mismatch, bad_signature, too_large, empty, other).",
    ["reason"],
)
UPLOAD_BYTES = Counter(
    "consortium_upload_bytes",
    "Bytes of update bodies received in full (within the size limit) and spooled to "
    "disk, whether then accepted or refused.",
)
DB_ERRORS = Counter(
    "consortium_db_errors",
    "Database errors the portal turned into a 503 (web) or survived by skipping a tick "
    "(scheduler), or met while collecting metrics (collector).",
    ["component"],
)

# Free-text reasons of consortium.rounds.services._reject, bucketed by their first words
# so that a label never carries a message (and the label set stays small and fixed).
REJECT_REASONS = {
    "second different upload": "duplicate",
    "round ": "round_closed",
    "declared dropped": "round_closed",  # v2: uploads closed when unmasking began
    "no mask key": "no_mask_key",  # v2: the bank advertised no mask key while sharing
    "after deadline": "deadline",
    "no signing key": "no_signing_key",
    "not a roster member": "not_member",
    "missing digest": "missing_headers",
    "no epsilon reported": "privacy_unreported",
    "privacy budget exceeded": "privacy_budget",
    "invalid ciphertext": "invalid_ciphertext",
    "digest mismatch": "digest_mismatch",
    "bad signature": "bad_signature",
    "too_large": "too_large",
    "empty": "empty",
}
REJECT_LABELS = (*dict.fromkeys(REJECT_REASONS.values()), "other")
for _label in REJECT_LABELS:
    UPDATES_REJECTED.labels(_label)  # export zeros, so rate() and dashboards see them
for _component in ("web", "scheduler", "collector"):
    DB_ERRORS.labels(_component)


# Secure aggregation v2 messages (mask keys, reveals), by kind and outcome.
SECAGG_KINDS = ("mask_keys", "reveal")
SECAGG_OUTCOMES = ("accepted", "refused")
SECAGG_MESSAGES = Counter(
    "consortium_secagg_messages",
    "Secure-aggregation v2 messages a bank sent (kind: mask_keys, reveal), accepted and "
    "stored or refused with a 4xx (idempotent retries of a stored message are not counted).",
    ["kind", "outcome"],
)
for _kind in SECAGG_KINDS:
    for _outcome in SECAGG_OUTCOMES:
        SECAGG_MESSAGES.labels(_kind, _outcome)  # export zeros, as for the upload reasons


def secagg_message(kind: str, outcome: str) -> None:
    """Count one secure-aggregation message; an unknown kind or outcome is a programming error."""
    if kind not in SECAGG_KINDS or outcome not in SECAGG_OUTCOMES:
        raise ValueError(f"unknown secagg message label {kind!r}/{outcome!r}")
    SECAGG_MESSAGES.labels(kind, outcome).inc()


def reject_label(reason: str) -> str:
    """The fixed label for a free-text rejection reason."""
    return next((v for k, v in REJECT_REASONS.items() if reason.startswith(k)), "other")


def update_rejected(reason: str) -> None:
    UPDATES_REJECTED.labels(reject_label(reason)).inc()


# --- events: scheduler ----------------------------------------------------------------

AGGREGATION_SECONDS = Histogram(
    "consortium_aggregation_duration_seconds",
    "Time to sum a round's encrypted updates and store the aggregate (published rounds).",
    buckets=ROUND_BUCKETS,
)
AGGREGATION_ERRORS = Counter(
    "consortium_aggregation_errors",
    "Aggregations that failed (unreadable blob, homomorphic sum error); the round is "
    "marked failed.",
)
OPEN_TO_PUBLISH_SECONDS = Histogram(
    "consortium_round_open_to_publish_seconds",
    "Time from a round opening to its aggregate being published.",
    buckets=ROUND_BUCKETS,
)
SCHEDULER_LAST_TICK = Gauge(
    "consortium_scheduler_last_tick_timestamp_seconds",
    "Unix time of the scheduler's last tick that reached the database without error.",
    multiprocess_mode="max",
)
AUDIT_VERIFIED = Gauge(
    "consortium_audit_chain_verified",
    "Result of the scheduler's last full audit chain verification: 1 intact, 0 broken.",
    multiprocess_mode="mostrecent",
)
AUDIT_VERIFIED_AT = Gauge(
    "consortium_audit_chain_last_verification_timestamp_seconds",
    "Unix time of the scheduler's last audit chain verification.",
    multiprocess_mode="max",
)
AUDIT_VERIFIED_EVENTS = Gauge(
    "consortium_audit_chain_verified_events",
    "Events the last audit chain verification walked through intact.",
    multiprocess_mode="mostrecent",
)
AUDIT_VERIFIED.set(float("nan"))  # not verified yet: neither intact nor broken
# The evaluation gate (docs/robustness.md): what the scheduler found when it moved on
# from an evaluation round, from the banks' verified verdicts.
GATE_DECISION_VALUES = {"adopt": 1.0, "reject": 0.0, "undecided": -1.0}
GATE_DECISIONS = Counter(
    "consortium_gate_decisions",
    "Evaluation-gate outcomes the scheduler recorded (decision: adopt, reject, or undecided "
    "when too few verified verdicts agreed by the verdict deadline or the round failed).",
    ["decision"],
)
for _decision in GATE_DECISION_VALUES:
    GATE_DECISIONS.labels(_decision)  # export zeros, so increase() sees the first rejection
GATE_LAST_DECISION = Gauge(
    "consortium_gate_last_decision",
    "The last evaluation-gate outcome: 1 adopt, 0 reject, -1 undecided (NaN: none yet).",
    multiprocess_mode="mostrecent",
)
GATE_LAST_DECISION.set(float("nan"))

# Metrics only the scheduler moves. Every process defines them (importing this module),
# so the web tier's /metrics leaves them out: its zeros would read as "never verified"
# or "no tick for ages" next to the scheduler's real values.
SCHEDULER_ONLY = frozenset(
    next(iter(metric.describe())).name
    for metric in (
        AGGREGATION_SECONDS,
        AGGREGATION_ERRORS,
        OPEN_TO_PUBLISH_SECONDS,
        SCHEDULER_LAST_TICK,
        AUDIT_VERIFIED,
        AUDIT_VERIFIED_AT,
        AUDIT_VERIFIED_EVENTS,
        GATE_DECISIONS,
        GATE_LAST_DECISION,
    )
)


def round_published(opened_at: datetime, closed_at: datetime, aggregation_seconds: float) -> None:
    """Record a publication: aggregation time and the round's open-to-publish time."""
    AGGREGATION_SECONDS.observe(aggregation_seconds)
    OPEN_TO_PUBLISH_SECONDS.observe(max(0.0, (closed_at - opened_at).total_seconds()))


def gate_decided(decision: str) -> None:
    """Record an evaluation-gate outcome; an unknown decision is a programming error."""
    if decision not in GATE_DECISION_VALUES:
        raise ValueError(f"unknown gate decision {decision!r}")
    GATE_DECISIONS.labels(decision).inc()
    GATE_LAST_DECISION.set(GATE_DECISION_VALUES[decision])

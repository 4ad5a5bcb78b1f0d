"""Prometheus metrics of a bank node, and the small HTTP server that exposes them.

``bank-node run`` serves, on ``metrics_port`` (config; 0 turns it off), three paths:

- ``/metrics``: the metrics below (plus prometheus-client's process metrics);
- ``/healthz``: 200 while the process answers (Kubernetes liveness);
- ``/readyz``: 200 when the state directory is writable and the data file readable,
  503 with the failing check otherwise (Kubernetes readiness).

The node is one process, so plain prometheus-client metrics suffice. Every name starts
with ``bank_node_``; each one's help text says what it measures. Nothing here carries a
transaction, a label from the data or a model weight: only counts, sizes and timings.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    make_wsgi_app,
)

log = logging.getLogger(__name__)

# No `*_created` series: Prometheus does not use them and they double the output.
disable_created_metrics()

# Local work and CKKS operations: from under a second (tiny data) to an hour.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

NODE_INFO = Info("bank_node", "This node: the bank it speaks for and the software version.")
ROUNDS_JOINED = Counter(
    "bank_node_rounds_joined",
    "Rounds this node uploaded an encrypted, signed update to.",
)
ROUNDS_MISSED = Counter(
    "bank_node_rounds_missed",
    "Rounds this node saw open but that closed (published or failed) without its update, "
    "by reason: skipped (the node sat it out, e.g. it lacks the round's key epoch) or "
    "not_submitted (no upload got through before the round closed). Rounds that opened "
    "and closed while the node was down are not seen here; the portal's "
    "consortium_bank_missed_rounds counts those.",
    ["reason"],
)
LOCAL_UPDATE_SECONDS = Histogram(
    "bank_node_local_update_duration_seconds",
    "Time to compute this node's update on local data: local training for "
    "kind=training rounds, feature moments for kind=statistics rounds (includes "
    "decrypting the round's base).",
    ["kind"],
    buckets=DURATION_BUCKETS,
)
GLOBAL_MODEL_AUPRC = Gauge(
    "bank_node_global_model_auprc",
    "AUPRC of the latest published global model on this bank's held-out data (NaN when "
    "the held-out data has no positive).",
)
TEST_POSITIVES = Gauge(
    "bank_node_test_positives",
    "Positive (labelled illicit) transactions in this bank's test period, as the "
    "[evaluation] split chose it (-1 before the data is read).",
)
TEST_POSITIVES_LOW = Gauge(
    "bank_node_test_positives_low",
    "1 when the test period holds fewer positives than [evaluation] min_test_positives "
    "(default 20), so the reported AUPRC, recall and F1 are unreliable; 0 otherwise.",
)
TEST_POSITIVES.set(-1)
GLOBAL_MODEL_ROUND = Gauge(
    "bank_node_global_model_round",
    "Round number of the global model the AUPRC gauge describes (0: none evaluated yet).",
)
ENCRYPT_SECONDS = Histogram(
    "bank_node_encrypt_duration_seconds",
    "Time to CKKS-encrypt this node's update into the wire container (secure aggregation "
    "v2: with its masks already computed, whose time is bank_node_mask_duration_seconds).",
    buckets=DURATION_BUCKETS,
)
MASK_SECONDS = Histogram(
    "bank_node_mask_duration_seconds",
    "Time to compute the secure-aggregation v2 masks of this node's update (pairwise and "
    "self-masks of every chunk), by where: background (on a thread while the node "
    "trained) or inline (at encryption, after the background computation failed).",
    ["where"],
    buckets=DURATION_BUCKETS,
)
MASK_WAIT_SECONDS = Histogram(
    "bank_node_mask_wait_duration_seconds",
    "Time the node's encryption waited for the masks computed in the background (0 when "
    "they were ready before training ended).",
    buckets=(0.01, *DURATION_BUCKETS),
)
DECRYPT_SECONDS = Histogram(
    "bank_node_decrypt_duration_seconds",
    "Time to decrypt a downloaded aggregate (a round's base, statistics or a global model).",
    buckets=DURATION_BUCKETS,
)
UPLOAD_BYTES = Counter(
    "bank_node_upload_bytes",
    "Bytes of encrypted updates uploaded to the portal (each update counted once, "
    "however many retries it took).",
)
PORTAL_RETRIES = Counter(
    "bank_node_portal_retries",
    "Requests to the portal retried after a connection error, 429 or 5xx.",
)
POLL_ERRORS = Counter(
    "bank_node_poll_errors",
    "Polls of the portal that ended in an error (refused, or unreachable after retries).",
)
AGGREGATES_REFUSED = Counter(
    "bank_node_aggregates_refused",
    "Published aggregates this node refused (not finite, count slot not a positive "
    "integer, integrity slot not the sum of the manifest's banks' tags, or a model it will "
    "not adopt: bank_node/aggregate_guard.py); the node kept its last good model and sat "
    "out what depended on it.",
)
LAST_SUCCESSFUL_ROUND = Gauge(
    "bank_node_last_successful_round_timestamp_seconds",
    "Unix time this node last evaluated a published round it had contributed to "
    "(0: never since start).",
)
PRIVACY_EPSILON_SPENT = Gauge(
    "bank_node_privacy_epsilon_spent",
    "Differential-privacy budget (epsilon) this bank has spent across rounds with DP-SGD "
    "and counterparty sketch rounds, as Opacus's accountant computes it (kept in "
    "state.json across restarts); 0 while no round asked for DP.",
)

# Bounded influence (bank_node/influence.py sets them): this bank's own step, on its node.
UPDATE_NORM = Gauge(
    "bank_node_update_norm",
    "L2 step of this bank's latest update from the round's base before clipping (-1: none).",
)
UPDATES_CLIPPED = Counter(
    "bank_node_updates_clipped", "Training rounds whose update was clipped to update_clip_norm."
)
COUNTS_CAPPED = Counter(
    "bank_node_counts_capped", "Training rounds whose row count was capped at max_bank_share."
)

ROSTER_PINNED = Gauge(
    "bank_node_roster_pinned",
    "1 when this node verifies the consortium's roster from a genesis it was given out of "
    "band (genesis_file); 0 when it has none and trusts the portal for members and keys.",
)
ROSTER_VERSION = Gauge(
    "bank_node_roster_version",
    "Number of the newest roster version this node has verified itself (-1: none pinned).",
)
REFUSALS = Counter(
    "bank_node_refusals",
    "Things this node refused because the portal asked for something its verified roster "
    "or its own guardrails do not allow, by reason (a roster version, a round, an "
    "aggregate). Each one is also logged and, with a pinned roster, sent as a signed "
    "objection.",
    ["reason"],
)
# The reasons a refusal can carry; anything else is counted as "other" (bounded labels).
REFUSAL_REASONS = (
    "roster_invalid",
    "roster_fork",
    "policy_not_approved",
    "key_epoch_not_in_force",
    "min_banks_below_floor",
    "privacy_floor",
    "guardrail",
    "cohort",
    "input_signature",
    "aggregate_digest",
    "manifest_mismatch",
    "aggregate_integrity",
    "input_privacy",
    # the evaluation gate (bank_node/gate.py, bank_node/gate_checks.py)
    "evaluation_invalid",
    "base_not_adopted",
    # secure aggregation v2 (bank_node/secagg.py, bank_node/secagg_record.py)
    "secagg_unpinned",
    "secagg_no_agreement_key",
    "secagg_state",
    "secagg_cohort",
    "secagg_keys",
    "mask_key_signature",
    "unmask_both_ways",
    "unmask_changed",
    "unmask_request",
    "share_unreadable",
    "secagg_record",
    "reveal_signature",
    "aggregate_substituted",
    # a published model this bank will not adopt (bank_node/aggregate_guard.py)
    "aggregate_not_finite",
    "aggregate_count",
    "aggregate_shape",
    "aggregate_unusable",
    "model_invalid",
    "update_too_large",
    # an answer of the portal that is not its declared message (bank_node/resilience.py)
    "portal_malformed",
    "other",
)
GATE_DECISIONS = Counter(
    "bank_node_gate_decisions",
    "Evaluation rounds this node decided itself from the decrypted consortium histograms, "
    "by decision (adopt, reject).",
    ["decision"],
)
GATE_CANDIDATE_AUPRC = Gauge(
    "bank_node_gate_candidate_auprc", "The last gated candidate's consortium AUPRC."
)
GATE_CURRENT_AUPRC = Gauge(
    "bank_node_gate_current_auprc",
    "The consortium AUPRC of the model that candidate would replace.",
)
UNEXPECTED_ERRORS = Counter(
    "bank_node_unexpected_errors",
    "Exceptions no check anticipated, caught by the poll loop so the node keeps running, "
    "by step (roster, poll, join, evaluate); each is logged at ERROR with its traceback. "
    "Any increase is a bug to report.",
    ["step"],
)
# The steps of a poll (bank_node/resilience.py); anything else is counted as "other".
STEPS = ("roster", "poll", "join", "evaluate", "other")
ROSTER_VERSION.set(-1)
UPDATE_NORM.set(-1)

for _reason in REFUSAL_REASONS:
    REFUSALS.labels(_reason)
for _step in STEPS:
    UNEXPECTED_ERRORS.labels(_step)
for _reason in ("skipped", "not_submitted"):
    ROUNDS_MISSED.labels(_reason)
for _decision in ("adopt", "reject"):
    GATE_DECISIONS.labels(_decision)
for _kind in ("training", "statistics", "evaluation", "sketch"):
    LOCAL_UPDATE_SECONDS.labels(_kind)
GLOBAL_MODEL_AUPRC.set(float("nan"))  # nothing evaluated yet

# Rounds seen open by this process, and closed ones already counted as missed.
_seen_open: set[int] = set()
_missed: set[int] = set()


def round_seen_open(number: int) -> None:
    _seen_open.add(number)


def round_listed(number: int, state: str, *, submitted: bool, skipped: bool) -> None:
    """Count a round as missed, once, when it closed without this node's update."""
    closed = state in ("published", "failed")
    if not closed or submitted or number not in _seen_open or number in _missed:
        return
    _missed.add(number)
    ROUNDS_MISSED.labels("skipped" if skipped else "not_submitted").inc()


def local_update_done(kind: str, seconds: float) -> None:
    LOCAL_UPDATE_SECONDS.labels(kind).observe(seconds)


def uploaded(path: Path) -> None:
    ROUNDS_JOINED.inc()
    UPLOAD_BYTES.inc(path.stat().st_size)


def global_model_evaluated(number: int, metrics: dict[str, Any]) -> None:
    auprc = metrics.get("auprc")
    GLOBAL_MODEL_AUPRC.set(float("nan") if auprc is None else float(auprc))
    GLOBAL_MODEL_ROUND.set(number)
    LAST_SUCCESSFUL_ROUND.set(time.time())


def gate_decided(decision: str, candidate_auprc: float, current_auprc: float) -> None:
    GATE_DECISIONS.labels(decision).inc()
    GATE_CANDIDATE_AUPRC.set(candidate_auprc)
    GATE_CURRENT_AUPRC.set(current_auprc)


def test_positives(count: int, *, low: bool) -> None:
    """How many positives the test period holds, and whether that is below the floor."""
    TEST_POSITIVES.set(count)
    TEST_POSITIVES_LOW.set(1 if low else 0)


def aggregate_refused() -> None:
    AGGREGATES_REFUSED.inc()


def roster_pinned(version: int | None) -> None:
    """Whether a roster is pinned, and the newest version verified (None: not pinned)."""
    ROSTER_PINNED.set(0 if version is None else 1)
    ROSTER_VERSION.set(-1 if version is None else version)


def refused(reason: str) -> None:
    REFUSALS.labels(reason if reason in REFUSAL_REASONS else "other").inc()


def unexpected_error(step: str) -> None:
    UNEXPECTED_ERRORS.labels(step if step in STEPS else "other").inc()


def set_privacy_spent(epsilon: float) -> None:
    """The total epsilon this bank has spent so far (DP-SGD and sketch rounds, one accountant)."""
    PRIVACY_EPSILON_SPENT.set(epsilon)


# --- the HTTP server ---------------------------------------------------------------------


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per scrape or probe is noise


def readiness(state_dir: Path, data_file: Path) -> dict[str, str]:
    """The node can work: its state directory takes writes, its data file can be read."""
    checks: dict[str, str] = {}
    try:
        with tempfile.TemporaryFile(dir=state_dir) as handle:
            handle.write(b"ok")
        checks["state_dir"] = "ok"
    except OSError as exc:
        checks["state_dir"] = f"not writable: {exc.strerror}"
    readable = data_file.exists() and os.access(data_file, os.R_OK)
    checks["data_file"] = "ok" if readable else "missing or unreadable"
    return checks


def health_app(
    ready: Callable[[], dict[str, str]],
) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """A WSGI app routing /metrics, /healthz and /readyz."""
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        body: dict[str, Any]
        if path == "/healthz":
            status, body = "200 OK", {"status": "ok"}
        elif path == "/readyz":
            checks = ready()
            ok = all(v == "ok" for v in checks.values())
            status = "200 OK" if ok else "503 Service Unavailable"
            body = {"status": "ok" if ok else "unavailable", "checks": checks}
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics, /healthz or /readyz\n"]
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    return app


def start_metrics_server(
    port: int,
    *,
    bank: str,
    state_dir: Path,
    data_file: Path,
    addr: str = "0.0.0.0",  # noqa: S104 - in a pod; the chart's NetworkPolicy admits scrapers only
) -> WSGIServer:
    """Serve /metrics, /healthz and /readyz on ``addr:port`` from a daemon thread."""
    try:
        version = metadata.version("consortium")
    except metadata.PackageNotFoundError:
        version = "unknown"
    NODE_INFO.info({"bank": bank, "version": version})
    server = make_server(
        addr,
        port,
        health_app(lambda: readiness(state_dir, data_file)),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s:%s/metrics", addr, server.server_port)
    return server

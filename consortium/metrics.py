"""Prometheus metrics of the portal: definitions, the scrape-time database collector, and
the request middleware, the protected ``/metrics`` view and the scheduler's own endpoint.

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

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count, Max
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    make_wsgi_app,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

log = logging.getLogger(__name__)

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

# Metrics only the scheduler moves. Every process defines them (importing this module),
# so the web tier's /metrics leaves them out: its zeros would read as "never verified"
# or "no tick for ages" next to the scheduler's real values.
SCHEDULER_ONLY = frozenset(
    metric.describe()[0].name
    for metric in (
        AGGREGATION_SECONDS,
        AGGREGATION_ERRORS,
        OPEN_TO_PUBLISH_SECONDS,
        SCHEDULER_LAST_TICK,
        AUDIT_VERIFIED,
        AUDIT_VERIFIED_AT,
        AUDIT_VERIFIED_EVENTS,
    )
)


def round_published(opened_at: datetime, closed_at: datetime, aggregation_seconds: float) -> None:
    """Record a publication: aggregation time and the round's open-to-publish time."""
    AGGREGATION_SECONDS.observe(aggregation_seconds)
    OPEN_TO_PUBLISH_SECONDS.observe(max(0.0, (closed_at - opened_at).total_seconds()))


_last_verification = -float("inf")


def audit_verify_if_due(interval_seconds: float) -> None:
    """Walk the whole audit chain at most every ``interval_seconds`` (0: never).

    It reads every event, so it runs in the scheduler on a timer, never per scrape.
    """
    global _last_verification
    now = time.monotonic()
    if interval_seconds <= 0 or now - _last_verification < interval_seconds:
        return
    from audit.selectors import audit_chain_verify

    check = audit_chain_verify()
    _last_verification = now
    AUDIT_VERIFIED.set(1 if check.ok else 0)
    AUDIT_VERIFIED_EVENTS.set(check.events)
    AUDIT_VERIFIED_AT.set_to_current_time()
    if not check.ok:
        log.error("audit chain broken at event %s: %s", check.first_bad_seq, check.reason)


# --- state: read from the database at scrape time -----------------------------------

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
        from audit.models import AuditEvent
        from consortium.members.models import Bank, BankStatus
        from consortium.rounds.models import Round, RoundState

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

        length = AuditEvent.objects.aggregate(n=Max("seq"))["n"] or 0
        yield GaugeMetricFamily(
            "consortium_audit_chain_length",
            "Events in the audit chain (the sequence number of its head).",
            value=length,
        )
        yield from self._in_flight(Round, RoundState)
        yield self._missed(Round, RoundState, Bank, BankStatus)

    @staticmethod
    def _in_flight(round_model: Any, states: Any) -> Iterator[Metric]:
        rnd = (
            round_model.objects.filter(state__in=[states.OPEN, states.AGGREGATING])
            .annotate(n=Count("submissions"))
            .values("number", "opened_at", "deadline_at", "n")
            .first()
        )
        number = GaugeMetricFamily(
            "consortium_round_in_flight_number",
            "Number of the round that is open or aggregating; 0 when none is.",
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
            from consortium.rounds.models import Submission

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
_DB_REGISTRY.register(DatabaseCollector())  # type: ignore[arg-type]


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
    return generate_latest(web) + generate_latest(_DB_REGISTRY)  # type: ignore[arg-type]


# --- the web tier: request middleware and the protected /metrics view ----------------


_STATIC_PREFIX = "/" + str(settings.STATIC_URL or "static/").lstrip("/")


class RequestMetricsMiddleware:
    """Count every response by resolved view and status, and time it.

    First in MIDDLEWARE, so it also sees the 400s and 503s other middleware produce. The
    view label is the route name ("round-current", "admin:index", ...), "static" for
    static files, "unresolved" when no route matched: a small, fixed set.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.view_name:
            view = match.view_name
        elif request.path.startswith(_STATIC_PREFIX):
            view = "static"  # answered by WhiteNoise before any URL is resolved
        else:
            view = "unresolved"
        HTTP_REQUESTS.labels(view, request.method or "", str(response.status_code)).inc()
        HTTP_LATENCY.labels(view).observe(time.perf_counter() - started)
        return response


def _client_allowed(request: HttpRequest) -> bool:
    try:
        addr = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in settings.METRICS_ALLOWED_NETWORKS)


def _denied(message: str, status: int) -> JsonResponse:
    response = JsonResponse({"message": message, "extra": {}}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition, outside the API and its credentials.

    With ``CONSORTIUM_METRICS_TOKEN`` (or ``_FILE``) set, a scrape must send
    ``Authorization: Bearer <token>``; without one, only clients in
    ``CONSORTIUM_METRICS_ALLOWED_CIDRS`` (default: loopback) may scrape.
    """
    token: str = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return _denied("send the metrics token as 'Authorization: Bearer <token>'", 401)
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            return _denied("wrong metrics token", 403)
    elif not _client_allowed(request):
        return _denied(
            "metrics are served only to CONSORTIUM_METRICS_ALLOWED_CIDRS or with the metrics token",
            403,
        )
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


# --- the scheduler's own endpoint -----------------------------------------------------


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape or probe is noise


def _scheduler_ready() -> tuple[int, bytes]:
    """The web tier's readiness check: database reachable, blob storage writable."""
    from consortium.api.health import readyz

    try:
        response = readyz(HttpRequest())
    finally:
        connection.close()  # each probe runs in a thread of its own: leave no connection
    return response.status_code, response.content


def health_app(
    ready: Callable[[], tuple[int, bytes]],
) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """A WSGI app: /healthz (the process answers), /readyz (``ready()``), else metrics."""
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            status, body = (200, json.dumps({"status": "ok"}).encode())
            if path == "/readyz":
                status, body = ready()
            phrase = "OK" if status == 200 else "Service Unavailable"
            start_response(f"{status} {phrase}", [("Content-Type", "application/json")])
            return [body]
        if path != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics, /healthz or /readyz\n"]
        return metrics_app(environ, start_response)

    return app


def scheduler_serve(port: int, addr: str = "0.0.0.0") -> WSGIServer:  # noqa: S104
    """Serve the scheduler's /metrics, /healthz and /readyz on ``addr:port`` in a thread."""
    server = make_server(
        addr,
        port,
        health_app(_scheduler_ready),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("scheduler metrics on http://%s:%s/metrics", addr, server.server_port)
    return server

"""The portal's Prometheus metrics: who may read them, and that they count what happens."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.db import DatabaseError
from django.test import Client
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from consortium import metrics
from consortium.members.models import BankStatus
from consortium.members.services import bank_set_status
from consortium.metrics import audit_check
from consortium.rounds.models import Round, RoundState
from consortium.rounds.services import scheduler_tick
from tests.conftest import encrypted_update, make_bank, upload_headers

pytestmark = pytest.mark.django_db


def scrape(client: Client, **extra: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return samples(response.content.decode())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def put_update(client: Client, rnd: Round, body: bytes, headers: dict[str, Any]) -> Any:
    return client.put(
        f"/api/v1/rounds/{rnd.number}/update",
        data=body,
        content_type="application/octet-stream",
        **headers,
    )


# --- who may scrape --------------------------------------------------------------------


def test_metrics_are_served_to_loopback_without_a_token(client):
    assert ("consortium_database_up", ()) in scrape(client)


def test_metrics_are_refused_to_an_address_outside_the_allowed_networks(client):
    response = client.get("/metrics", REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 403
    assert "CONSORTIUM_METRICS_ALLOWED_CIDRS" in response.json()["message"]


def test_the_allowed_networks_come_from_settings(client, settings):
    settings.METRICS_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_with_a_token_set_every_scrape_needs_it_even_from_loopback(client, settings):
    settings.METRICS_TOKEN = "s3cret-token"
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic s3cret-token").status_code == 401
    good = client.get("/metrics", REMOTE_ADDR="192.0.2.9", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert good.status_code == 200


def test_metrics_are_not_part_of_the_api_and_its_credentials(client, bank_alpha):
    # A bank's API credential is not a metrics credential: the address rule still applies.
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3", **bank_alpha.auth()).status_code == 403
    assert client.post("/metrics").status_code == 405


def test_a_bad_cidr_in_the_environment_is_refused_at_start_up(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from consortium.settings import env_networks

    monkeypatch.setenv("CONSORTIUM_METRICS_ALLOWED_CIDRS", "10.0.0.1/8")
    with pytest.raises(ImproperlyConfigured, match="CONSORTIUM_METRICS_ALLOWED_CIDRS"):
        env_networks("CONSORTIUM_METRICS_ALLOWED_CIDRS", "")


# --- requests --------------------------------------------------------------------------


def test_requests_are_counted_by_resolved_view_method_and_status(client):
    before = value("consortium_http_requests_total", view="healthz", method="GET", status="200")
    missing = value("consortium_http_requests_total", view="unresolved", method="GET", status="404")
    for _ in range(3):
        client.get("/healthz")
    client.get("/no/such/page")
    assert (
        value("consortium_http_requests_total", view="healthz", method="GET", status="200")
        == before + 3
    )
    assert (
        value("consortium_http_requests_total", view="unresolved", method="GET", status="404")
        == missing + 1
    )
    assert value("consortium_http_request_duration_seconds_count", view="healthz") >= 3


@pytest.mark.parametrize("method", ["FOO", "PROPFIND"])
def test_a_request_with_an_unknown_method_is_counted_under_other(client, method):
    before = {
        status: value(
            "consortium_http_requests_total", view="healthz", method="other", status=status
        )
        for status in ("200", "405")
    }
    response = client.generic(method, "/healthz")
    status = str(response.status_code)
    assert (
        value("consortium_http_requests_total", view="healthz", method="other", status=status)
        == before.get(status, 0.0) + 1
    )
    assert not any(
        sample.labels.get("method") == method
        for family in REGISTRY.collect()
        for sample in family.samples
    )


def test_static_files_are_labelled_static_not_unresolved(client, settings):
    path = f"/{settings.STATIC_URL.strip('/')}/admin/css/base.css"
    before = value("consortium_http_requests_total", view="static", method="GET", status="200")
    assert client.get(path).status_code == 200
    assert (
        value("consortium_http_requests_total", view="static", method="GET", status="200")
        == before + 1
    )


def test_api_views_are_labelled_with_their_route_name(client, bank_alpha):
    before = value(
        "consortium_http_requests_total", view="round-current", method="GET", status="204"
    )
    assert client.get("/api/v1/rounds/current", **bank_alpha.auth()).status_code == 204
    after = value(
        "consortium_http_requests_total", view="round-current", method="GET", status="204"
    )
    assert after == before + 1


# --- state read from the database at scrape time ----------------------------------------


def test_banks_and_rounds_are_read_from_the_database(client, open_round, bank_gamma):
    bank_set_status(bank=bank_gamma.bank, status=BankStatus.SUSPENDED, actor="test")
    got = scrape(client)
    assert got[("consortium_banks", (("status", "active"),))] == 2
    assert got[("consortium_banks", (("status", "suspended"),))] == 1
    assert got[("consortium_banks", (("status", "revoked"),))] == 0
    assert got[("consortium_rounds", (("state", "open"),))] == 1
    assert got[("consortium_rounds", (("state", "published"),))] == 0
    assert got[("consortium_round_in_flight_number", ())] == open_round.number
    assert got[("consortium_round_in_flight_deadline_timestamp_seconds", ())] == pytest.approx(
        open_round.deadline_at.timestamp()
    )
    assert got[("consortium_round_in_flight_submissions", ())] == 0
    from audit.models import AuditEvent

    assert got[("consortium_audit_chain_length", ())] == AuditEvent.objects.count() > 0
    assert got[("consortium_database_up", ())] == 1


def test_without_a_round_in_flight_there_is_no_deadline_series(client, bank_alpha):
    got = scrape(client)
    assert got[("consortium_round_in_flight_number", ())] == 0
    assert ("consortium_round_in_flight_deadline_timestamp_seconds", ()) not in got


def test_a_lost_database_still_gives_a_scrape_that_says_so(client, monkeypatch):
    def broken(self: Any) -> Any:
        raise DatabaseError("connection refused")

    monkeypatch.setattr(metrics.DatabaseCollector, "_families", broken)
    before = value("consortium_db_errors_total", component="collector")
    got = scrape(client)
    assert got[("consortium_database_up", ())] == 0
    assert ("consortium_banks", (("status", "active"),)) not in got
    assert value("consortium_db_errors_total", component="collector") == before + 1


def test_the_web_tier_does_not_export_what_only_the_scheduler_measures(client):
    names = {name for name, _ in scrape(client)}
    assert "consortium_updates_accepted_total" in names
    for family in metrics.SCHEDULER_ONLY:
        assert not any(n.startswith(family) for n in names), family


# --- updates and rounds ------------------------------------------------------------------


def test_accepted_and_rejected_updates_and_upload_bytes_are_counted(
    client, ckks, open_round, bank_alpha, bank_beta
):
    accepted = value("consortium_updates_accepted_total")
    bad_sig = value("consortium_updates_rejected_total", reason="bad_signature")
    empty = value("consortium_updates_rejected_total", reason="empty")
    uploaded = value("consortium_upload_bytes_total")
    body, _ = encrypted_update(ckks, open_round.vector_length, seed=1)
    assert (
        put_update(
            client, open_round, body, upload_headers(bank_alpha, open_round.number, body)
        ).status_code
        == 201
    )
    forged = upload_headers(bank_beta, open_round.number, body, signer=bank_alpha)
    assert put_update(client, open_round, body, forged).status_code == 403
    assert (
        put_update(
            client, open_round, b"", upload_headers(bank_beta, open_round.number, b"")
        ).status_code
        == 400
    )
    assert value("consortium_updates_accepted_total") == accepted + 1
    assert value("consortium_updates_rejected_total", reason="bad_signature") == bad_sig + 1
    assert value("consortium_updates_rejected_total", reason="empty") == empty + 1
    # The forged upload was refused on its signature before its body was read.
    assert value("consortium_upload_bytes_total") == uploaded + len(body)


def test_an_upload_over_the_size_limit_is_counted_as_too_large(
    client, settings, ckks, open_round, bank_alpha
):
    settings.MAX_UPLOAD_BYTES = 2048
    before = value("consortium_updates_rejected_total", reason="too_large")
    body, _ = encrypted_update(ckks, open_round.vector_length)
    response = put_update(
        client, open_round, body, upload_headers(bank_alpha, open_round.number, body)
    )
    assert response.status_code == 413
    assert value("consortium_updates_rejected_total", reason="too_large") == before + 1


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("second different upload", "duplicate"),
        ("round published", "round_closed"),
        ("round failed", "round_closed"),
        ("after deadline", "deadline"),
        ("no signing key", "no_signing_key"),
        ("not a roster member", "not_member"),
        ("missing digest or signature", "missing_headers"),
        ("no epsilon reported", "privacy_unreported"),
        ("privacy budget exceeded", "privacy_budget"),
        ("invalid ciphertext: chunk 3 is 12 bytes, outside [100, 200]", "invalid_ciphertext"),
        ("digest mismatch", "digest_mismatch"),
        ("bad signature", "bad_signature"),
        ("something new nobody bucketed", "other"),
    ],
)
def test_rejection_reasons_are_bucketed_into_a_fixed_label_set(reason, label):
    assert metrics.reject_label(reason) == label
    assert label in metrics.REJECT_LABELS


def test_publishing_a_round_records_aggregation_and_open_to_publish_time(
    client, ckks, open_round, bank_alpha, bank_beta, bank_gamma
):
    aggregations = value("consortium_aggregation_duration_seconds_count")
    published = value("consortium_round_open_to_publish_seconds_count")
    for seed, persona in enumerate([bank_alpha, bank_beta, bank_gamma]):
        body, _ = encrypted_update(ckks, open_round.vector_length, seed=seed)
        put_update(client, open_round, body, upload_headers(persona, open_round.number, body))
    scheduler_tick()
    scheduler_tick()
    open_round.refresh_from_db()
    assert open_round.state == RoundState.PUBLISHED
    assert value("consortium_aggregation_duration_seconds_count") == aggregations + 1
    assert value("consortium_round_open_to_publish_seconds_count") == published + 1
    assert scrape(client)[("consortium_rounds", (("state", "published"),))] == 1


def test_a_failed_aggregation_is_counted(
    ckks, open_round, bank_alpha, bank_beta, bank_gamma, client
):
    from consortium.rounds import storage

    errors = value("consortium_aggregation_errors_total")
    for seed, persona in enumerate([bank_alpha, bank_beta, bank_gamma]):
        body, _ = encrypted_update(ckks, open_round.vector_length, seed=seed)
        put_update(client, open_round, body, upload_headers(persona, open_round.number, body))
    storage.absolute(open_round.submissions.first().blob).unlink()
    scheduler_tick(open_round.deadline_at + timedelta(seconds=1))
    open_round.refresh_from_db()
    assert open_round.state == RoundState.FAILED
    assert value("consortium_aggregation_errors_total") == errors + 1


def test_a_bank_that_sent_nothing_to_the_last_closed_rounds_is_reported(
    client, ckks, open_round, bank_alpha, bank_beta, bank_gamma
):
    for seed, persona in enumerate([bank_alpha, bank_beta]):
        body, _ = encrypted_update(ckks, open_round.vector_length, seed=seed)
        put_update(client, open_round, body, upload_headers(persona, open_round.number, body))
    scheduler_tick(open_round.deadline_at + timedelta(seconds=1))  # published without gamma
    late = make_bank("delta")  # joined after that round: it missed nothing
    got = scrape(client)
    missed = {
        labels[0][1]: v
        for (name, labels), v in got.items()
        if name == "consortium_bank_missed_rounds"
    }
    assert missed == {"alpha": 0, "beta": 0, "gamma": 1, late.slug: 0}


# --- the scheduler's own endpoint ------------------------------------------------------


def test_audit_verification_reports_an_intact_chain(open_round):
    from audit.models import AuditEvent

    audit_check._last_verification = -float("inf")
    metrics.audit_verify_if_due(600)
    assert value("consortium_audit_chain_verified") == 1
    assert value("consortium_audit_chain_verified_events") == AuditEvent.objects.count()
    stamp = value("consortium_audit_chain_last_verification_timestamp_seconds")
    metrics.audit_verify_if_due(600)  # not due again yet
    assert value("consortium_audit_chain_last_verification_timestamp_seconds") == stamp


def test_the_scheduler_serves_metrics_health_and_readiness_on_its_own_port(db):
    server = metrics.scheduler_serve(0, "127.0.0.1")
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        text = requests.get(f"{base}/metrics", timeout=5).text
        assert "consortium_aggregation_duration_seconds_count" in text
        assert "consortium_scheduler_last_tick_timestamp_seconds" in text
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "storage": "ok"}
        assert requests.get(f"{base}/other", timeout=5).status_code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_every_rejection_reason_the_services_use_has_its_own_label():
    """A new reason in services/submissions.py must be bucketed here, not silently become 'other'."""
    import inspect
    import re

    from consortium.rounds.services import submissions

    source = inspect.getsource(submissions)
    calls = re.findall(r"_reject\(\s*\w+,\s*[\w.]+,\s*f?\"([^\"{]+)", source)
    assert len(calls) >= 8
    assert {
        reason: metrics.reject_label(reason)
        for reason in calls
        if metrics.reject_label(reason) == "other"
    } == {}

"""The audit REST API: events, verification, checkpoints, reports and the portal's key."""

from __future__ import annotations

import json

import pytest

from audit.chain import checkpoint_message
from audit.models import AuditEvent, Checkpoint
from audit.portal_key import portal_public_key
from he.signing import verify

pytestmark = pytest.mark.django_db


@pytest.fixture
def as_auditor(client, auditor, round_history):
    client.force_login(auditor)
    return client


def test_events_come_oldest_first_and_paginated(as_auditor):
    page = as_auditor.get("/api/v1/audit/events?limit=5").json()
    assert page["count"] == AuditEvent.objects.count()
    assert [e["seq"] for e in page["results"]] == [1, 2, 3, 4, 5]
    first = AuditEvent.objects.get(seq=1)
    assert page["results"][0]["hash"] == first.hash and page["results"][0]["prev_hash"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("action=update.accepted", lambda e: e.action == "update.accepted"),
        ("actor=bank:alpha", lambda e: e.actor == "bank:alpha"),
        ("round=2", lambda e: e.data.get("round") == 2),
        ("action=round.published&round=1", lambda e: e.action == "round.published"),
    ],
)
def test_events_can_be_filtered(as_auditor, query, expected):
    seqs = [
        e["seq"]
        for e in as_auditor.get(f"/api/v1/audit/events?limit=500&{query}").json()["results"]
    ]
    assert seqs, query
    assert seqs == [e.seq for e in AuditEvent.objects.order_by("seq") if expected(e)]


def test_events_can_be_filtered_by_time(as_auditor):
    middle = AuditEvent.objects.get(action="round.published")
    since = middle.created_at.isoformat()
    seqs = [
        e["seq"]
        for e in as_auditor.get("/api/v1/audit/events", {"since": since, "limit": 500}).json()[
            "results"
        ]
    ]
    assert seqs[0] == middle.seq
    until = as_auditor.get("/api/v1/audit/events", {"until": since, "limit": 500}).json()
    assert until["results"][-1]["seq"] == middle.seq - 1


def test_a_bad_filter_is_a_400_with_the_field_named(as_auditor):
    response = as_auditor.get("/api/v1/audit/events?round=first")
    assert response.status_code == 400
    assert "round" in response.json()["message"]


def test_verify_reports_an_intact_chain_and_then_the_first_bad_event(as_auditor, tamper):
    intact = as_auditor.get("/api/v1/audit/verify").json()
    assert intact["ok"] is True and intact["checkpoints"] == Checkpoint.objects.count() > 0
    victim = AuditEvent.objects.get(action="update.accepted", actor="bank:beta")
    tamper.sql(
        "UPDATE audit_auditevent SET data = %s WHERE seq = %s", ['{"digest": "0"}', victim.seq]
    )
    broken = as_auditor.get("/api/v1/audit/verify").json()
    assert (broken["ok"], broken["first_bad_seq"], broken["problem"]) == (
        False,
        victim.seq,
        "modified",
    )


def test_checkpoints_are_listed_with_signatures_the_published_key_verifies(client, as_auditor):
    listed = as_auditor.get("/api/v1/audit/checkpoints").json()["results"]
    assert [c["reason"] for c in listed] == ["round 1 published", "round 2 failed"]
    key = client.get("/api/v1/audit/public-key").json()["public_key"]
    for c in listed:
        stored = Checkpoint.objects.get(seq=c["seq"], reason=c["reason"])
        message = checkpoint_message(
            c["seq"], c["head_hash"], stored.signed_at.isoformat(), c["reason"]
        )
        assert verify(key, message, c["signature"])


def test_the_public_key_is_public_even_for_a_caller_with_a_bad_credential(client):
    response = client.get("/api/v1/audit/public-key", HTTP_AUTHORIZATION="Bearer nonsense")
    assert response.status_code == 200
    body = response.json()
    assert body["algorithm"] == "Ed25519"
    assert body["public_key"] == portal_public_key()
    assert body["pem"].startswith("-----BEGIN PUBLIC KEY-----")


@pytest.mark.parametrize(
    ("fmt", "content_type", "magic"),
    [
        ("json", "application/json", b"{"),
        ("csv", "text/csv", b"record,"),
        ("pdf", "application/pdf", b"%PDF-"),
    ],
)
def test_the_report_downloads_in_each_format(as_auditor, fmt, content_type, magic):
    response = as_auditor.get(f"/api/v1/audit/report?format={fmt}&rounds=1,2")
    assert response.status_code == 200
    assert response["Content-Type"].startswith(content_type)
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert response.content.startswith(magic)
    exported = AuditEvent.objects.filter(action="audit.report_exported").last()
    assert exported is not None
    assert exported.actor == "user:audrey" and exported.data["rounds"] == [1, 2]


def test_the_json_report_is_the_signed_report(as_auditor):
    response = as_auditor.get("/api/v1/audit/report?since=2000-01-01")
    report = json.loads(response.content)
    assert response["X-Report-SHA256"] == report["signature"]["body_sha256"]
    assert report["selection"]["since"].startswith("2000-01-01T00:00:00")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("format=xml", "format"),
        ("rounds=1,99", "no such round: 99"),
        ("rounds=1&since=2026-01-01", "not both"),
        ("since=tomorrow", "ISO datetime"),
    ],
)
def test_a_bad_report_request_is_a_400_that_says_why(as_auditor, query, message):
    response = as_auditor.get(f"/api/v1/audit/report?{query}")
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert not AuditEvent.objects.filter(action="audit.report_exported").exists()


def test_operators_may_export_too(client, operator, round_history):
    client.force_login(operator)
    assert client.get("/api/v1/audit/report?format=csv").status_code == 200

"""Disputed rounds in the portal: objected to by enough banks, never built on, cleared only by them."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.utils import timezone

from audit import render, verify
from audit.chain import encode_report, report_body_sha256, report_message
from audit.models import AuditEvent
from audit.portal_key import portal_signing_key
from audit.report import Selection
from consortium.audit_api.services import audit_report_export
from consortium.governance.models import DisputeClearance
from consortium.governance.models import Objection as ObjectionRow
from consortium.governance.selectors import policy_digest
from consortium.rounds.models import Round, RoundKind, RoundState
from consortium.rounds.selectors import round_base_for, round_stats_for
from consortium.rounds.services import round_open_next
from consortium.rounds.services.scheduler import round_close_due
from governance import Objection, sign_clearance, sign_objection
from he.signing import sign
from tests.governance.portal_helpers import (  # noqa: F401  (founders: a fixture)
    OPERATOR_PASSWORD,
    Founder,
    basic,
    found,
    founders,
    post,
)
from tests.governance.roster_helpers import NOW, new_bank

pytestmark = pytest.mark.django_db


@pytest.fixture
def banks(client, epoch, policy, founders, operator) -> dict[str, Founder]:  # noqa: F811
    """Four founders whose roster has the test policy approved and the key epoch in force."""
    approved = ((policy.name, policy.version, policy_digest(policy)),)
    found(client, founders, epochs=(epoch.fingerprint,), policies=approved)
    return founders


def _published(policy: Any, epoch: Any, number: int, kind: str = RoundKind.TRAINING) -> Round:
    training = kind == RoundKind.TRAINING
    return Round.objects.create(
        number=number,
        kind=kind,
        policy=policy,
        vector_length=policy.vector_length if training else policy.stats_vector_length,
        policy_snapshot=policy.snapshot(),
        key_epoch=epoch,
        state=RoundState.PUBLISHED,
        opened_at=timezone.now(),
        deadline_at=timezone.now(),
        closed_at=timezone.now(),
    )


def _object(client: Any, bank: Founder, number: int) -> Any:
    objection = Objection(
        consortium_id="acme",
        round_number=number,
        bank_id=bank.slug,
        reason_code="aggregate_integrity",
        message=f"round {number}: the count slot is negative",
        created_at=NOW,
    )
    body = {"objection": objection.to_dict(), "signature": sign_objection(objection, bank.keys.key)}
    response = post(client, "/api/v1/objections", body, bank.auth())
    assert response.status_code == 201, response.json()
    return response


def _dispute(client: Any, banks: dict[str, Founder], number: int) -> None:
    for slug in ("alpha", "beta", "gamma"):
        _object(client, banks[slug], number)


def _clear(client: Any, bank: Founder, number: int, signature: str | None = None) -> Any:
    signature = signature or sign_clearance("acme", number, bank.keys.key)
    path = f"/api/v1/disputes/{number}/clearances"
    return post(client, path, {"signature": signature}, bank.auth())


def _disputed(client: Any, bank: Founder, number: int) -> bool:
    return bool(client.get(f"/api/v1/rounds/{number}", **bank.auth()).json()["disputed"])


def test_objections_below_the_threshold_do_not_dispute_a_round(client, banks, policy, epoch):
    rnd = _published(policy, epoch, 1)
    _object(client, banks["alpha"], 1)
    _object(client, banks["beta"], 1)
    assert not _disputed(client, banks["delta"], 1)
    assert client.get("/api/v1/disputes/1", **banks["delta"].auth()).status_code == 404
    assert not AuditEvent.objects.filter(action="round.disputed").exists()
    assert round_base_for(policy) == rnd


def test_objections_at_the_threshold_dispute_the_round_and_it_is_audited_once(
    client, banks, policy, epoch
):
    _published(policy, epoch, 1)
    _dispute(client, banks, 1)
    assert _disputed(client, banks["delta"], 1)
    shown = client.get("/api/v1/disputes/1", **banks["delta"].auth()).json()
    assert shown == {
        "round": 1,
        "threshold": 3,
        "objectors": ["alpha", "beta", "gamma"],
        "clearers": [],
        "disputed": True,
        "cleared": False,
    }
    _object(client, banks["delta"], 1)  # a fourth objection: still one dispute event
    events = AuditEvent.objects.filter(action="round.disputed")
    assert [(e.data["round"], e.data["objectors"]) for e in events] == [
        (1, ["alpha", "beta", "gamma"])
    ]


def test_the_next_round_is_based_on_the_newest_undisputed_published_round(
    client, banks, policy, epoch
):
    first = _published(policy, epoch, 1)
    _published(policy, epoch, 2)
    _dispute(client, banks, 2)
    assert round_open_next(timezone.now()) == ["training round 3 opened"]
    opened = Round.objects.get(number=3)
    assert opened.base_round == first
    event = AuditEvent.objects.get(action="round.opened", data__round=3)
    assert event.data["base_round"] == 1


def test_a_round_in_flight_on_a_base_that_becomes_disputed_fails_at_once_with_the_reason(
    client, banks, policy, epoch
):
    _published(policy, epoch, 1)
    assert round_open_next(timezone.now()) == ["training round 2 opened"]
    assert round_close_due(timezone.now()) == []  # its base is fine: nothing to do yet
    _dispute(client, banks, 1)
    assert round_close_due(timezone.now()) == [
        "round 2 failed: round 1 it builds on is disputed by the banks' signed objections"
    ]
    failed = Round.objects.get(number=2)
    assert failed.state == RoundState.FAILED and "round 1" in failed.failure_reason
    assert AuditEvent.objects.filter(action="round.failed", data__round=2).count() == 1


def test_a_disputed_statistics_round_is_not_used_for_normalisation(client, banks, policy, epoch):
    first = _published(policy, epoch, 1, RoundKind.STATISTICS)
    _published(policy, epoch, 2, RoundKind.STATISTICS)
    _dispute(client, banks, 2)
    assert round_stats_for(policy, epoch) == first
    _dispute(client, banks, 1)
    assert round_stats_for(policy, epoch) is None  # the scheduler opens a new one


def test_enough_valid_clearances_clear_the_dispute_and_the_round_is_a_base_again(
    client, banks, policy, epoch
):
    _published(policy, epoch, 1)
    second = _published(policy, epoch, 2)
    _dispute(client, banks, 2)
    for slug in ("alpha", "delta"):
        assert _clear(client, banks[slug], 2).status_code == 200
    assert _disputed(client, banks["beta"], 2) and round_base_for(policy) != second
    response = _clear(client, banks["beta"], 2)
    assert response.status_code == 200, response.json()
    assert response.json()["cleared"] and response.json()["clearers"] == ["alpha", "beta", "delta"]
    assert not _disputed(client, banks["beta"], 2)
    assert round_base_for(policy) == second
    assert AuditEvent.objects.filter(action="dispute.clearance_signed").count() == 3
    assert AuditEvent.objects.filter(action="round.dispute_cleared", data__round=2).count() == 1


@pytest.mark.parametrize(
    ("signature_of", "status", "words"),
    [
        (lambda b: sign_clearance("acme", 3, b["delta"].keys.key), 403, "does not verify"),
        (lambda b: sign_clearance("other", 2, b["delta"].keys.key), 403, "does not verify"),
        (lambda b: sign_clearance("acme", 2, b["alpha"].keys.key), 403, "does not verify"),
        (lambda b: sign_clearance("acme", 2, new_bank("delta").key), 403, "does not verify"),
        (lambda b: "not-a-signature", 403, "does not verify"),
    ],
    ids=["replayed-other-round", "replayed-other-consortium", "forged-key", "stranger", "junk"],
)
def test_a_forged_or_replayed_clearance_is_refused_and_audited(
    client, banks, policy, epoch, signature_of, status, words
):
    _published(policy, epoch, 2)
    _dispute(client, banks, 2)
    response = _clear(client, banks["delta"], 2, signature_of(banks))
    assert response.status_code == status
    assert words in response.json()["message"]
    assert not DisputeClearance.objects.exists()
    assert AuditEvent.objects.filter(action="dispute.clearance_refused").count() == 1


def test_a_bank_clearing_twice_is_refused_and_counts_once(client, banks, policy, epoch):
    _published(policy, epoch, 2)
    _dispute(client, banks, 2)
    assert _clear(client, banks["alpha"], 2).status_code == 200
    again = _clear(client, banks["alpha"], 2)
    assert again.status_code == 409 and "already signed" in again.json()["message"]
    shown = client.get("/api/v1/disputes/2", **banks["alpha"].auth()).json()
    assert shown["clearers"] == ["alpha"] and shown["disputed"]


def test_a_round_that_is_not_disputed_cannot_be_cleared(client, banks, policy, epoch):
    _published(policy, epoch, 2)
    _object(client, banks["alpha"], 2)
    response = _clear(client, banks["alpha"], 2)
    assert response.status_code == 409 and "not disputed" in response.json()["message"]


def test_the_operator_cannot_clear_a_dispute_through_the_api(client, banks, policy, epoch):
    _published(policy, epoch, 2)
    _dispute(client, banks, 2)
    body = {"signature": sign_clearance("acme", 2, banks["alpha"].keys.key)}
    response = post(
        client, "/api/v1/disputes/2/clearances", body, basic("olivia", OPERATOR_PASSWORD)
    )
    assert response.status_code == 403
    assert _disputed(client, banks["alpha"], 2)


def test_clearance_rows_written_into_the_database_without_valid_signatures_clear_nothing(
    client, banks, policy, epoch
):
    second = _published(policy, epoch, 2)
    _dispute(client, banks, 2)
    forged = sign_clearance("acme", 2, new_bank("x").key)
    for slug in ("alpha", "beta", "gamma", "delta"):
        DisputeClearance.objects.create(round_number=2, bank_id=slug, signature=forged)
    assert _disputed(client, banks["alpha"], 2)
    assert round_base_for(policy) != second


def test_editing_or_deleting_objection_rows_does_not_lift_the_dispute(client, banks, policy, epoch):
    second = _published(policy, epoch, 2)
    _dispute(client, banks, 2)
    ObjectionRow.objects.filter(bank__slug="alpha").update(round_number=9)
    ObjectionRow.objects.filter(bank__slug="beta").delete()
    # The signed bodies and the trail's copies still name round 2.
    assert _disputed(client, banks["gamma"], 2)
    assert round_base_for(policy) != second


def test_the_round_page_shows_the_dispute_and_its_objections(
    client, banks, policy, epoch, operator
):
    _published(policy, epoch, 2)
    _dispute(client, banks, 2)
    client.force_login(operator)
    page = client.get("/rounds/2/").content.decode()
    assert 'data-testid="round-disputed"' in page
    assert "alpha, beta, gamma" in page
    assert page.count("aggregate_integrity") == 3


@pytest.fixture
def report_with_disputes(client, banks, policy, epoch) -> dict[str, Any]:
    """Round 1 disputed then cleared by three banks, round 2 disputed; the JSON report."""
    for number in (1, 2):
        _published(policy, epoch, number)
        _dispute(client, banks, number)
    for slug in ("alpha", "beta", "delta"):
        assert _clear(client, banks[slug], 1).status_code == 200
    return audit_report_export(selection=Selection(), fmt="json", actor="test").report


def _resigned_verdict(report: dict[str, Any]) -> verify.Verdict:
    """Verify ``report`` after the operator, who holds the portal's key, signed it again."""
    digest = report_body_sha256(report)
    report["signature"] = {
        **report["signature"],
        "body_sha256": digest,
        "value": sign(portal_signing_key(), report_message(digest)),
    }
    return verify.verify_report(report, encode_report(report), [report["portal_public_key"]])


def test_the_audit_report_lists_each_dispute_and_its_clearance_and_verifies_offline(
    report_with_disputes,
):
    report = report_with_disputes
    assert [(d["round"], d["disputed"], d["cleared"]) for d in report["roster"]["disputes"]] == [
        (1, False, True),
        (2, True, False),
    ]
    assert report["roster"]["disputes"][0]["clearers"] == ["alpha", "beta", "delta"]
    assert [(c["round"], c["bank"]) for c in report["roster"]["clearances"]] == [
        (1, "alpha"),
        (1, "beta"),
        (1, "delta"),
    ]
    verdict = verify.verify_report(report, encode_report(report), [report["portal_public_key"]])
    assert verdict.ok, verdict.failure
    assert "disputes: rounds disputed 2; cleared by the banks 1" in "\n".join(verdict.summary)
    actions = {e["action"] for e in report["events"]}
    assert {"round.disputed", "round.dispute_cleared", "dispute.clearance_signed"} <= actions


def test_the_csv_and_pdf_reports_show_the_disputes(report_with_disputes):
    csv_text = render.render(report_with_disputes, "csv")[0].decode()
    rows = [r for r in csv.DictReader(io.StringIO(csv_text)) if r["record"] == "dispute"]
    assert [(r["round"], r["action"]) for r in rows] == [("1", "cleared"), ("2", "disputed")]
    assert "objected to by alpha, beta, gamma (threshold 3)" in rows[1]["detail"]
    pdf = render.render(report_with_disputes, "pdf")[0]
    assert pdf.startswith(b"%PDF")


def _hide(report: dict[str, Any]) -> None:
    report["roster"]["disputes"] = [d for d in report["roster"]["disputes"] if d["round"] != 2]


def _hide_with_its_objections(report: dict[str, Any]) -> None:
    _hide(report)
    roster = report["roster"]
    roster["objections"] = [o for o in roster["objections"] if o["round"] != 2]


def _clear_without_signatures(report: dict[str, Any]) -> None:
    entry = report["roster"]["disputes"][1]
    entry.update(disputed=False, cleared=True, clearers=["alpha", "beta", "gamma"])


def _forge_clearances(report: dict[str, Any]) -> None:
    forged = sign_clearance("acme", 2, new_bank("x").key)
    report["roster"]["clearances"] += [
        {"round": 2, "bank": b, "signature": forged, "received_at": NOW}
        for b in ("alpha", "beta", "gamma")
    ]
    _clear_without_signatures(report)


@pytest.mark.parametrize(
    "tamper", [_hide, _hide_with_its_objections, _clear_without_signatures, _forge_clearances]
)
def test_a_report_that_hides_or_clears_a_dispute_without_the_banks_fails_verification(
    report_with_disputes, tamper
):
    tamper(report_with_disputes)
    verdict = _resigned_verdict(report_with_disputes)
    assert not verdict.ok
    assert verdict.failure.startswith("disputes: round 2 ")

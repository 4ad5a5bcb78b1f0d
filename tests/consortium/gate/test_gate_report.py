"""The audit report lists each gate decision with its verdicts, and the offline verifier
recomputes the decisions from the verdict signatures."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.utils import timezone

from audit import render, verify
from audit.chain import encode_report, report_body_sha256, report_message
from audit.gates import check_gates
from audit.portal_key import portal_signing_key
from audit.report import Selection
from audit.roster_verify import RosterProblem
from consortium.audit_api.services import audit_report_export
from consortium.rounds.models import GateVerdict, Round
from consortium.rounds.services import round_open_next
from governance.verdict import sign_verdict
from he.signing import sign
from tests.consortium.gate.conftest import all_agree, publish, verdict_on
from tests.governance.roster_helpers import new_bank

pytestmark = pytest.mark.django_db


def _next() -> Round:
    round_open_next(timezone.now())
    return Round.objects.latest("number")


def _export() -> dict[str, Any]:
    return audit_report_export(selection=Selection(), fmt="json", actor="test").report


@pytest.fixture
def gated_history(client, banks, gated) -> None:
    """Round 1 adopted by evaluation round 2; round 3 (from 1) rejected by round 4."""
    publish(_next())
    all_agree(client, banks, publish(_next(), digest="e2" * 32), "adopt")
    publish(_next())
    all_agree(client, banks, publish(_next(), digest="e4" * 32), "reject")
    _next()  # the scheduler moves on: both decisions are in the trail


@pytest.fixture
def report(gated_history) -> dict[str, Any]:
    return _export()


def _gates(report: dict[str, Any]) -> list[tuple[int, int, str | None]]:
    return [(g["round"], g["candidate_round"], g["decision"]) for g in report["roster"]["gates"]]


def _verify(report: dict[str, Any]) -> verify.Verdict:
    return verify.verify_report(report, encode_report(report), [report["portal_public_key"]])


def _resigned(report: dict[str, Any]) -> verify.Verdict:
    """Verify ``report`` after the operator, who holds the portal's key, signed it again."""
    digest = report_body_sha256(report)
    report["signature"] = {
        **report["signature"],
        "body_sha256": digest,
        "value": sign(portal_signing_key(), report_message(digest)),
    }
    return _verify(report)


def test_the_report_lists_each_gate_decision_and_verifies_offline(report):
    assert _gates(report) == [(2, 1, "adopt"), (4, 3, "reject")]
    assert report["roster"]["gates"][1]["verdicts"] == {
        "alpha": "reject",
        "beta": "reject",
        "gamma": "reject",
    }
    assert len(report["roster"]["verdicts"]) == 6
    by_number = {r["number"]: r for r in report["rounds"]}
    assert by_number[4]["candidate_round"] == 3 and by_number[3]["base_round"] == 1
    checked = _verify(report)
    assert checked.ok, checked.failure
    summary = "\n".join(checked.summary)
    assert "gates: round 2 adopt for candidate 1; round 4 reject for candidate 3" in summary


def test_the_csv_and_pdf_reports_show_the_gates_and_their_verdicts(report):
    rows = list(csv.DictReader(io.StringIO(render.render(report, "csv")[0].decode())))
    gates = [(r["round"], r["action"]) for r in rows if r["record"] == "gate"]
    assert gates == [("2", "adopt"), ("4", "reject")]
    verdicts = [(r["round"], r["bank"], r["action"]) for r in rows if r["record"] == "verdict"]
    assert ("4", "beta", "reject") in verdicts and len(verdicts) == 6
    assert render.render(report, "pdf")[0].startswith(b"%PDF")


def test_a_verdict_row_deleted_from_the_portal_still_counts_from_the_trail(gated_history):
    GateVerdict.objects.filter(round__number=4).delete()
    report = _export()
    assert report["roster"]["gates"][1]["decision"] == "reject"
    assert _verify(report).ok


def _adopt_the_rejected(report: dict[str, Any]) -> None:
    report["roster"]["gates"][1].update(decision="adopt")


def _hide_the_rejection(report: dict[str, Any]) -> None:
    report["roster"]["gates"] = report["roster"]["gates"][:1]


def _forge_adopting_verdicts(report: dict[str, Any]) -> None:
    """The operator drops the real verdicts and signs adopt ones with a key of its own."""
    evaluation = next(r for r in report["rounds"] if r["number"] == 4)
    about = (4, evaluation["candidate_round"], evaluation["aggregate_digest"])
    forger = new_bank("x").key
    adopters = ("alpha", "beta", "gamma")
    fakes = [
        {
            "round": 4,
            "bank": slug,
            "verdict": verdict_on(*about, slug, "adopt").to_dict(),
            "signature": sign_verdict(verdict_on(*about, slug, "adopt"), forger),
            "received_at": "2026-12-01T12:00:00+00:00",
        }
        for slug in adopters
    ]
    section = report["roster"]
    section["verdicts"] = [v for v in section["verdicts"] if v["round"] != 4] + fakes
    section["gates"][1].update(decision="adopt", verdicts=dict.fromkeys(adopters, "adopt"))


@pytest.mark.parametrize(
    "tamper", [_adopt_the_rejected, _hide_the_rejection, _forge_adopting_verdicts]
)
def test_a_report_that_adopts_or_hides_a_rejected_candidate_fails_verification(report, tamper):
    tamper(report)
    checked = _resigned(report)
    assert not checked.ok
    assert checked.failure.startswith("gates: round 4 is listed as")


def test_a_trail_event_claiming_a_decision_the_verdicts_do_not_give_fails(report):
    claimed = {"action": "round.gate_decided", "data": {"round": 4, "decision": "adopt"}}
    with pytest.raises(RosterProblem, match="the trail says round 4 decided 'adopt'"):
        check_gates(report["roster"], report["rounds"], [*report["events"], claimed])

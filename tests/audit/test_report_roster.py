"""The audit report carries the banks' roster history, and the offline verifier re-checks it.

The consortium here is founded by four banks through the portal's API, admits a fifth,
puts a key epoch in force, has a suspension pending and one signed objection. The
tampering tests play the operator, who holds the portal's key: they change the roster in
an exported report and re-sign the whole report, so that only the banks' own signatures
can give the forgery away.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from audit import verify
from audit.chain import encode_report, report_body_sha256, report_message
from audit.portal_key import portal_signing_key
from audit.report import Selection
from consortium.audit_api.services import audit_report_export
from consortium.governance.models import RosterVersion as RosterRow
from consortium.governance.selectors import signed_version
from governance import Objection, sign_objection, version_hash
from he.signing import sign
from tests.governance.portal_helpers import (
    Founder,
    approve,
    founded,  # noqa: F401  (fixture)
    founders,  # noqa: F401  (fixture)
    onboard,
    post,
    propose,
)
from tests.governance.roster_helpers import NOW, found

ROOT = Path(__file__).resolve().parents[2]
NEW_EPOCH = "cd" * 32
Report = dict[str, Any]


def _object(client: Client, founder: Founder, round_number: int) -> None:
    objection = Objection(
        consortium_id="acme",
        round_number=round_number,
        bank_id=founder.slug,
        reason_code="unknown_bank",
        message=f"round {round_number}'s manifest names bank 'sham', not on the roster",
        created_at=NOW,
    )
    body = {
        "objection": objection.to_dict(),
        "signature": sign_objection(objection, founder.keys.key),
    }
    assert post(client, "/api/v1/objections", body, founder.auth()).status_code == 201


@pytest.fixture
def governed(client: Client, founded: dict[str, Founder]) -> dict[str, Founder]:  # noqa: F811
    """Genesis (4 founders), v1 admits epsilon, v2 a key epoch, v3 pending, one objection."""
    epsilon = onboard("epsilon")
    admit = {"kind": "admit_bank", "member": epsilon.keys.member().to_dict()}
    assert propose(client, {"change": admit}).status_code == 201
    for bank in (epsilon, founded["alpha"], founded["beta"], founded["gamma"]):
        assert approve(client, bank).status_code == 200
    epoch = {"kind": "register_key_epoch", "fingerprint": NEW_EPOCH}
    assert propose(client, {"change": epoch}).status_code == 201
    for slug in ("alpha", "beta", "gamma", "delta"):
        assert approve(client, founded[slug]).status_code == 200
    suspend = {"kind": "suspend_bank", "bank_id": "delta", "reason": "audit finding"}
    assert propose(client, {"change": suspend}).status_code == 201
    assert approve(client, founded["alpha"]).status_code == 200
    _object(client, founded["alpha"], 7)
    return {**founded, "epsilon": epsilon}


@pytest.fixture
def report(governed: dict[str, Founder]) -> Report:
    return audit_report_export(selection=Selection(), fmt="json", actor="test").report


def _resigned(report: Report) -> tuple[Report, bytes]:
    """The report signed again with the portal's key, as the operator could."""
    digest = report_body_sha256(report)
    report["signature"] = {
        **report["signature"],
        "body_sha256": digest,
        "value": sign(portal_signing_key(), report_message(digest)),
    }
    return report, encode_report(report)


def _verdict(report: Report, **kwargs: Any) -> verify.Verdict:
    doctored, raw = _resigned(report)
    return verify.verify_report(doctored, raw, [report["portal_public_key"]], **kwargs)


def test_the_report_lists_every_version_in_force_as_the_banks_signed_it(report):
    roster = report["roster"]
    assert roster["consortium_id"] == "acme"
    assert [(v["number"], v["kind"], v["status"]) for v in roster["versions"]] == [
        (0, "genesis", "in_force"),
        (1, "admit_bank", "in_force"),
        (2, "register_key_epoch", "in_force"),
    ]
    for entry in roster["versions"]:
        row = RosterRow.objects.get(version_hash=entry["version_hash"])
        assert entry["version"] == signed_version(row).to_dict()
        assert entry["previous_hash"] == row.previous_hash and entry["in_force_at"]
    assert "Admit bank 'epsilon'" in roster["versions"][1]["summary"]
    assert sorted(roster["versions"][1]["version"]["signatures"]) == [
        "alpha",
        "beta",
        "epsilon",
        "gamma",
    ]


def test_the_report_lists_the_pending_proposal_and_the_signed_objection(report):
    roster = report["roster"]
    assert [(p["number"], p["kind"], p["status"]) for p in roster["proposals"]] == [
        (3, "suspend_bank", "pending")
    ]
    assert roster["proposals"][0]["in_force_at"] is None
    (objection,) = roster["objections"]
    assert (objection["bank"], objection["round"], objection["reason_code"]) == (
        "alpha",
        7,
        "unknown_bank",
    )
    assert objection["roster_version"] == 2
    assert objection["body"]["message"] == objection["message"]
    assert objection["signature"]


def test_a_report_with_the_roster_verifies_offline_against_the_pinned_genesis(
    report, governed, tmp_path
):
    path, key, genesis = tmp_path / "report.json", tmp_path / "portal.pub", tmp_path / "g.json"
    path.write_bytes(encode_report(report))
    key.write_text(report["portal_public_key"])
    genesis.write_text(json.dumps(signed_version(RosterRow.objects.get(number=0)).to_dict()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "DATABASE"))}
    args = [str(path), "--public-key", str(key), "--genesis", str(genesis)]
    done = subprocess.run(
        [sys.executable, "-m", "audit.verify", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "roster: versions 0 to 2 signed and linked, genesis equals the pinned one" in done.stdout
    assert "1 not in force; objection signatures valid: 1" in done.stdout


def _alter_signature(report: Report) -> None:
    signatures = report["roster"]["versions"][1]["version"]["signatures"]
    good = signatures["gamma"]
    signatures["gamma"] = ("A" if good[0] != "A" else "B") + good[1:]


def _reorder(report: Report) -> None:
    versions = report["roster"]["versions"]
    versions[1], versions[2] = versions[2], versions[1]


def _replay(report: Report) -> None:
    versions = report["roster"]["versions"]
    versions.insert(2, copy.deepcopy(versions[1]))


def _remove_signature(report: Report) -> None:
    del report["roster"]["versions"][2]["version"]["signatures"]["delta"]


def _alter_objection(report: Report) -> None:
    objection = report["roster"]["objections"][0]
    good = objection["signature"]
    objection["signature"] = ("A" if good[0] != "A" else "B") + good[1:]


def _reword_objection(report: Report) -> None:
    report["roster"]["objections"][0]["body"]["message"] = "nothing to see"
    report["roster"]["objections"][0]["message"] = "nothing to see"


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (_alter_signature, "roster version 1: carries signatures that do not count (gamma: "),
        (_reorder, "roster version 2: number 2 does not follow version 0"),
        (_replay, "roster version 1: number 1 does not follow version 1"),
        (_remove_signature, "roster version 2: has 3 valid approval(s) of 4 needed"),
        (_alter_objection, "objection 1 (bank alpha, round 7): the signature does not verify"),
        (_reword_objection, "objection 1 (bank alpha, round 7): the signature does not verify"),
    ],
    ids=["forged", "reordered", "replayed", "under-signed", "objection-forged", "objection-edited"],
)
def test_a_doctored_roster_fails_offline_naming_the_version_even_when_re_signed(
    report: Report, tamper: Callable[[Report], None], expected: str
):
    assert _verdict(copy.deepcopy(report)).ok, "the untouched report must verify"
    doctored = copy.deepcopy(report)
    tamper(doctored)
    verdict = _verdict(doctored)
    assert not verdict.ok
    assert expected in verdict.failure


def test_a_look_alike_roster_on_keys_the_operator_holds_fails_only_against_the_pin(report):
    # Four banks whose keys the operator made: a well-signed chain of its own, which only
    # the genesis a real bank handed over can tell apart from the consortium's.
    fakes = found()
    doctored = copy.deepcopy(report)
    doctored["roster"] = {
        "consortium_id": fakes.genesis.consortium_id,
        "versions": [
            {
                "number": 0,
                "kind": "genesis",
                "version_hash": version_hash(fakes.genesis),
                "previous_hash": fakes.genesis.previous_hash,
                "version": fakes.genesis.to_dict(),
            }
        ],
        "proposals": [],
        "objections": [],
    }
    assert _verdict(copy.deepcopy(doctored)).ok
    real = signed_version(RosterRow.objects.get(number=0))
    verdict = _verdict(doctored, genesis=real)
    assert not verdict.ok
    assert "roster version 0: the report's genesis" in verdict.failure
    assert "is not the pinned genesis" in verdict.failure


def test_the_csv_shows_the_roster_history_and_the_objection(governed):
    content = audit_report_export(selection=Selection(), fmt="csv", actor="test").content
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    versions = [r for r in rows if r["record"] == "roster_version"]
    assert [(r["seq"], r["action"], r["status"]) for r in versions] == [
        ("0", "genesis", "in_force"),
        ("1", "admit_bank", "in_force"),
        ("2", "register_key_epoch", "in_force"),
        ("3", "suspend_bank", "pending"),
    ]
    assert "Admit bank 'epsilon'" in versions[1]["detail"]
    assert "signed by alpha, beta, epsilon, gamma" in versions[1]["detail"]
    (objection,) = [r for r in rows if r["record"] == "objection"]
    assert (objection["bank"], objection["round"], objection["action"]) == (
        "alpha",
        "7",
        "unknown_bank",
    )


def test_the_pdf_shows_the_roster_history_and_the_objection(governed, tmp_path):
    content = audit_report_export(selection=Selection(), fmt="pdf", actor="test").content
    path = tmp_path / "report.pdf"
    path.write_bytes(content)
    text = subprocess.run(
        ["pdftotext", "-raw", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Roster: the banks' signed charter and its changes" in text
    assert "Found consortium 'acme'" in text
    assert "Admit bank 'epsilon'" in text
    assert "pending" in text and "Suspend bank 'delta'" in text
    assert "Objections: rounds the banks' nodes refused" in text
    assert "unknown_bank" in text


def test_a_period_ending_before_an_admission_shows_it_as_not_yet_in_force(governed):
    admitted = RosterRow.objects.get(number=1).in_force_at
    export = audit_report_export(
        selection=Selection(until=admitted), fmt="json", actor="test"
    ).report
    roster = export["roster"]
    assert [v["number"] for v in roster["versions"]] == [0]
    assert [(p["number"], p["status"]) for p in roster["proposals"]] == [(1, "pending")]
    assert roster["objections"] == []
    assert _verdict(copy.deepcopy(export)).ok

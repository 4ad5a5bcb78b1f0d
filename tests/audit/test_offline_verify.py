"""``python -m audit.verify`` re-checks an exported report with no database and no Django."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from audit import verify
from audit.chain import (
    encode_report,
    event_body,
    event_hash,
    report_body_sha256,
    report_message,
)
from audit.portal_key import portal_signing_key
from audit.report import Selection
from consortium.audit_api.services import audit_report_export
from he.signing import public_key_b64, sign, signing_key_new
from tests.governance.roster_helpers import found

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "DATABASE"))}
    return subprocess.run(
        [sys.executable, "-m", "audit.verify", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


@pytest.fixture
def exported(round_history, client, tmp_path):
    """An exported JSON report and the portal key as fetched from the public endpoint."""
    report = audit_report_export(selection=Selection(), fmt="json", actor="test")
    path = tmp_path / "report.json"
    path.write_bytes(report.content)
    answer = client.get("/api/v1/audit/public-key")
    assert answer.status_code == 200
    key = tmp_path / "portal.pub"
    key.write_text(answer.json()["public_key"] + "\n")
    return path, key, report.report


def test_an_exported_report_verifies_offline_without_django(exported):
    path, key, report = exported
    done = _run(str(path), "--public-key", str(key))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VALID" in done.stdout
    assert f"events #1 to #{report['events'][-1]['seq']}" in done.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from audit.verify import main; rc = main(sys.argv[1:]); "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django'; "
            "sys.exit(rc)",
            str(path),
            "--public-key",
            str(key),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("DJANGO")},
    )
    assert probe.returncode == 0, probe.stderr


def _flip(
    path: Path,
    needle: bytes,
    *,
    after: bytes = b"",
    offset: int | None = None,
    replacement: bytes | None = None,
) -> None:
    """Change one byte of the file: inside ``needle`` (its middle, or ``offset``), looking
    for it only past ``after``."""
    data = bytearray(path.read_bytes())
    at = data.index(needle, data.index(after) if after else 0)
    at += len(needle) // 2 if offset is None else offset
    old = data[at : at + 1]
    data[at : at + 1] = replacement or (b"0" if old != b"0" else b"1")
    path.write_bytes(bytes(data))


def test_changing_one_byte_of_an_event_names_that_event(exported):
    path, key, report = exported
    event = next(e for e in report["events"] if e["action"] == "update.accepted")
    # Keys are sorted, so within the event its actor comes a little before its hash.
    data = path.read_bytes()
    at = data.rindex(b'"actor": "bank:', 0, data.index(f'"hash": "{event["hash"]}"'.encode()))
    path.write_bytes(data[: at + 12] + b"X" + data[at + 13 :])
    done = _run(str(path), "--public-key", str(key))
    assert done.returncode == 1
    assert f"event #{event['seq']} was modified" in done.stdout


def _field(report, *path):
    value = report
    for part in path:
        value = value[part]
    return value


@pytest.mark.parametrize(
    ("where", "after", "expected"),
    [
        (
            ("rounds", 0, "manifest", "inputs", 1, "digest"),
            '"rounds": ',
            "disagrees with the round's manifest",
        ),
        (
            ("rounds", 0, "submissions", 1, "digest"),
            '"submissions": [',
            "signature over its digest does not verify",
        ),
        (
            ("rounds", 0, "privacy", "differential_privacy"),
            '"rounds": ',
            "changed after the portal signed it",
        ),
        (("checkpoints", 0, "head_hash"), '"checkpoints": [', "checkpoint of event"),
        (("signature", "value"), '"signature": {', "signature over the report does not verify"),
        (("events", 3, "hash"), '"events": [', "event #"),
    ],
)
def test_changing_one_byte_anywhere_makes_the_report_fail(exported, where, after, expected):
    path, key, report = exported
    value = _field(report, *where)
    # Keys are sorted: the value's first occurrence past its section's key is the one meant.
    _flip(path, json.dumps(value).encode(), after=after.encode())
    done = _run(str(path), "--public-key", str(key))
    assert done.returncode == 1, done.stdout
    assert expected in done.stdout


def test_a_byte_changed_outside_any_value_is_noticed_too(exported):
    path, key, _ = exported
    _flip(path, b'\n  "banks"', offset=1, replacement=b"\t")  # indentation: a space, a tab
    done = _run(str(path), "--public-key", str(key))
    assert done.returncode == 1
    assert "not the exact encoding the portal signed" in done.stdout


def test_no_single_byte_change_passes_and_none_ends_in_a_traceback(exported, capsys):
    path, key, _ = exported
    original = path.read_bytes()
    rng = random.Random(5)
    for at in rng.sample(range(len(original)), 60):
        data = bytearray(original)
        data[at] = rng.choice([c for c in b'0123456789abcdef "{}:,eXz' if c != data[at]])
        path.write_bytes(bytes(data))
        code = verify.main([str(path), "--public-key", str(key)])
        assert code in (1, 2), f"byte {at} changed and the report still verified"
    capsys.readouterr()


def test_a_report_of_later_rounds_verifies_from_its_first_recorded_link(round_history, tmp_path):
    export = audit_report_export(selection=Selection(rounds=(2,)), fmt="json", actor="test")
    assert export.report["events"][0]["seq"] > 1
    path, key = tmp_path / "r2.json", tmp_path / "portal.pub"
    path.write_bytes(export.content)
    key.write_text(export.report["portal_public_key"])
    verdict = verify.verify_report(
        export.report, export.content, [export.report["portal_public_key"]]
    )
    assert verdict.ok, verdict.failure
    assert _run(str(path), "--public-key", str(key)).returncode == 0


def test_a_history_rewritten_with_fresh_hashes_is_caught_by_the_signed_checkpoints(exported):
    path, key, report = exported
    # The attacker edits an early event and recomputes every hash and link after it.
    # They cannot re-sign the checkpoints (nor the report) without the portal's key.
    events = report["events"]
    events[2]["actor"] = "user:mallory"
    prev = events[2]["prev_hash"]
    for event in events[2:]:
        event["prev_hash"] = prev
        event["hash"] = prev = event_hash(prev, event_body(event))
    path.write_bytes(encode_report(report))
    done = _run(str(path), "--public-key", str(key))
    assert done.returncode == 1
    assert "was rewritten after it was signed" in done.stdout


def test_a_report_checked_against_another_key_fails(exported, tmp_path):
    path, _, _ = exported
    stranger = tmp_path / "stranger.pub"
    stranger.write_text(public_key_b64(signing_key_new()))
    done = _run(str(path), "--public-key", str(stranger))
    assert done.returncode == 1
    assert "not the portal's trusted key" in done.stdout


def test_the_key_may_be_given_as_pem_or_as_the_apis_json(exported, client, tmp_path):
    path, _, _ = exported
    answer = client.get("/api/v1/audit/public-key").json()
    pem, api = tmp_path / "portal.pem.pub", tmp_path / "portal.json"
    pem.write_text(answer["pem"])
    api.write_text(json.dumps(answer))
    assert _run(str(path), "--public-key", str(pem)).returncode == 0
    assert _run(str(path), "--public-key", str(api)).returncode == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the report"),
        (b"{not json", "not JSON (Expecting property name"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"format": "something else"}', "not a consortium audit report"),
        (
            b'{"format": "consortium-audit-report-v1", "events": {}}',
            "events is missing or not a list",
        ),
        (
            b'{"format": "consortium-audit-report-v1", "events": [{"seq": "1"}]}',
            "events[0]: seq is missing or not a int",
        ),
    ],
)
def test_an_unreadable_or_malformed_report_exits_2_with_a_clear_message(
    exported, tmp_path, content, message
):
    _, key, _ = exported
    path = tmp_path / "broken.json"
    if content is not None:
        path.write_bytes(content)
    done = _run(str(path), "--public-key", str(key))
    assert done.returncode == 2
    assert str(path) in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read the public key"), ("bm90IGEga2V5", "32 bytes"), ("@@", "not base64")],
)
def test_an_unusable_key_file_exits_2(exported, tmp_path, content, message):
    path, _, _ = exported
    key = tmp_path / "bad.pub"
    if content is not None:
        key.write_text(content)
    done = _run(str(path), "--public-key", str(key))
    assert (done.returncode, "Traceback" in done.stderr) == (2, False)
    assert message in done.stderr


def test_the_committed_example_report_verifies():
    done = _run(str(EXAMPLES / "audit-report.json"), "--public-key", str(EXAMPLES / "portal.pub"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "roster: versions 0 to 1 signed and linked" in done.stdout
    assert (EXAMPLES / "audit-report.pdf").read_bytes().startswith(b"%PDF-")


def test_a_report_of_a_trail_the_portal_found_broken_does_not_verify(
    round_history, tamper, tmp_path
):
    from audit.models import AuditEvent

    # Outside the exported rounds' events, so only the portal's own check can see it.
    victim = AuditEvent.objects.get(seq=1)
    tamper.sql("UPDATE audit_auditevent SET actor = 'mallory' WHERE seq = 1")
    export = audit_report_export(selection=Selection(rounds=(2,)), fmt="json", actor="test")
    assert export.report["events"][0]["seq"] > victim.seq
    path, key = tmp_path / "r.json", tmp_path / "portal.pub"
    path.write_bytes(export.content)
    key.write_text(export.report["portal_public_key"])
    done = _run(str(path), "--public-key", str(key))
    assert done.returncode == 1
    assert "the portal's own check of its database failed: event #1 was modified" in done.stdout


def test_a_report_from_before_the_roster_still_verifies(exported):
    _, _, report = exported
    del report["roster"]  # reports exported before the roster section existed
    digest = report_body_sha256(report)
    report["signature"]["body_sha256"] = digest
    report["signature"]["value"] = sign(portal_signing_key(), report_message(digest))
    trusted = [report["portal_public_key"]]
    verdict = verify.verify_report(report, encode_report(report), trusted)
    assert verdict.ok, verdict.failure
    assert "roster: none in force in this report" in verdict.summary


def test_a_report_without_a_roster_fails_against_a_pinned_genesis(exported, tmp_path):
    path, key, _ = exported
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps(found().genesis.to_dict()))
    done = _run(str(path), "--public-key", str(key), "--genesis", str(genesis))
    assert done.returncode == 1
    assert "a genesis was pinned but the report holds no roster in force" in done.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read the genesis"), ('{"number": 0}', "not a roster genesis")],
)
def test_an_unusable_genesis_file_exits_2(exported, tmp_path, content, message):
    path, key, _ = exported
    genesis = tmp_path / "genesis.json"
    if content is not None:
        genesis.write_text(content)
    done = _run(str(path), "--public-key", str(key), "--genesis", str(genesis))
    assert (done.returncode, "Traceback" in done.stderr) == (2, False)
    assert message in done.stderr


def test_a_roster_section_of_the_wrong_shape_exits_2(exported):
    path, key, report = exported
    report["roster"] = {"versions": {}, "proposals": [], "objections": []}
    path.write_bytes(encode_report(report))
    done = _run(str(path), "--public-key", str(key))
    assert done.returncode == 2
    assert "roster: versions is missing or not a list of objects" in done.stderr


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [(b'"algorithm": "Ed25519"', b'"algorithm": "Ed25510"', "algorithm must be Ed25519"),
     (b'"algorithm"', b'"a0gorithm"', "signature block must hold exactly algorithm")],
)  # fmt: skip
def test_the_signature_blocks_own_members_cannot_be_changed(exported, old, new, words):
    # The block is outside what is signed: found by changing every byte of a report once.
    path, key, _ = exported
    original = path.read_bytes()
    assert original.count(old) == 1
    path.write_bytes(original.replace(old, new))
    done = _run(str(path), "--public-key", str(key))
    assert done.returncode == 1
    assert words in done.stdout

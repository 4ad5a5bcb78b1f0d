"""One export, one snapshot: the evidence pack and the formats exported one by one agree."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from audit.chain import encode_report
from audit.models import AuditEvent
from audit.selectors import audit_head

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def as_auditor(client, auditor, round_history):
    client.force_login(auditor)
    return client


@pytest.fixture
def portal_pub(client, tmp_path) -> Path:
    key = tmp_path / "portal.pub"
    key.write_text(client.get("/api/v1/audit/public-key").json()["public_key"] + "\n")
    return key


def _verify(path: Path, key: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "DATABASE"))}
    return subprocess.run(
        [sys.executable, "-m", "audit.verify", str(path), "--public-key", str(key)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


def _pack(client, query: str = "") -> tuple[bytes, dict[str, bytes]]:
    response = client.get(f"/api/v1/audit/report?format=zip{query}")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return response.content, {i.filename: archive.read(i) for i in archive.infolist()}


def _csv_head(content: bytes) -> tuple[int, str]:
    rows = csv.DictReader(io.StringIO(content.decode()))
    head = next(r for r in rows if r["record"] == "signed_head")
    return int(head["seq"]), head["hash"]


def _pdf_text(content: bytes, tmp_path: Path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(content)
    done = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.split())


def test_the_pack_holds_three_formats_of_one_snapshot_and_a_signed_manifest(
    as_auditor, tmp_path, portal_pub
):
    head = audit_head()
    raw, files = _pack(as_auditor)
    assert sorted(files) == ["manifest.json", "report.csv", "report.json", "report.pdf"]
    manifest, report = json.loads(files["manifest.json"]), json.loads(files["report.json"])
    snapshot = {"seq": head.seq, "head_hash": head.hash}
    assert {k: manifest["snapshot"][k] for k in snapshot} == snapshot
    assert {k: report["signed_head"][k] for k in snapshot} == snapshot
    assert _csv_head(files["report.csv"]) == (head.seq, head.hash)
    text = _pdf_text(files["report.pdf"], tmp_path)
    assert f"event #{head.seq}" in text and head.hash in text
    # The PDF names the JSON file it stands for.
    assert hashlib.sha256(files["report.json"]).hexdigest() in text
    for entry in manifest["files"]:
        assert entry["sha256"] == hashlib.sha256(files[entry["name"]]).hexdigest()
    path = tmp_path / "pack.zip"
    path.write_bytes(raw)
    done = _verify(path, portal_pub)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"snapshot: event #{head.seq}" in done.stdout and "VALID" in done.stdout


def test_the_export_event_comes_after_the_snapshot_and_names_the_manifest(as_auditor):
    head = audit_head().seq
    _, files = _pack(as_auditor)
    event = AuditEvent.objects.get(action="audit.report_exported")
    assert event.seq == head + 1
    assert event.data["manifest_sha256"] == hashlib.sha256(files["manifest.json"]).hexdigest()
    report = json.loads(files["report.json"])
    assert report["events"][-1]["seq"] == head  # the export event is not in its own report
    assert event.data["report_sha256"] == report["signature"]["body_sha256"]


def _rezip(files: dict[str, bytes], path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def test_a_csv_changed_inside_the_pack_is_named_by_the_verifier(as_auditor, tmp_path, portal_pub):
    _, files = _pack(as_auditor)
    files["report.csv"] = files["report.csv"].replace(b"signature valid", b"signature VALID", 1)
    path = tmp_path / "tampered.zip"
    _rezip(files, path)
    done = _verify(path, portal_pub)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "INVALID" in done.stdout and "report.csv was changed" in done.stdout
    assert "report.pdf" not in done.stdout and "report.json was" not in done.stdout


def test_a_pack_with_a_file_added_or_removed_is_invalid(as_auditor, tmp_path, portal_pub):
    _, files = _pack(as_auditor)
    added = tmp_path / "added.zip"
    _rezip({**files, "note.txt": b"trust me"}, added)
    removed = tmp_path / "removed.zip"
    _rezip({k: v for k, v in files.items() if k != "report.pdf"}, removed)
    assert "note.txt is not in the signed manifest" in _verify(added, portal_pub).stdout
    assert "report.pdf is listed in the signed manifest but missing" in (
        _verify(removed, portal_pub).stdout
    )


def test_a_manifest_signed_by_another_key_is_refused(as_auditor, tmp_path, portal_pub):
    _, files = _pack(as_auditor)
    manifest = json.loads(files["manifest.json"])
    manifest["signature"]["public_key"] = "A" * 43 + "="
    files["manifest.json"] = json.dumps(manifest).encode()
    path = tmp_path / "forged.zip"
    _rezip(files, path)
    done = _verify(path, portal_pub)
    assert done.returncode == 1 and "not the portal's trusted key" in done.stdout


def test_the_three_formats_exported_one_by_one_at_a_sequence_number_are_the_pack(as_auditor):
    head = audit_head().seq
    _, files = _pack(as_auditor, f"&at={head}")
    for fmt in ("pdf", "csv", "json"):
        # Exports in between (each adds an event) do not change the snapshot's report.
        response = as_auditor.get(f"/api/v1/audit/report?format={fmt}&at={head}")
        assert response.status_code == 200
        assert response["X-Snapshot-Seq"] == str(head)
        assert response.content == files[f"report.{fmt}"], fmt
    assert audit_head().seq == head + 4
    report = json.loads(files["report.json"])
    assert encode_report(report) == files["report.json"]


def test_a_snapshot_at_an_earlier_event_carries_nothing_after_it(as_auditor):
    response = as_auditor.get("/api/v1/audit/report?format=json&at=5")
    assert response.status_code == 200
    report = json.loads(response.content)
    assert report["events"][-1]["seq"] == 5 == report["signed_head"]["seq"]
    assert report["signed_head"]["head_hash"] == AuditEvent.objects.get(seq=5).hash


@pytest.mark.parametrize("at", ["999999", "-1", "x"])
def test_a_snapshot_beyond_the_trail_is_a_400_that_says_why(as_auditor, at):
    response = as_auditor.get(f"/api/v1/audit/report?format=csv&at={at}")
    assert response.status_code == 400
    assert "at" in json.dumps(response.json())
    assert not AuditEvent.objects.filter(action="audit.report_exported").exists()


def _info(content: bytes) -> dict[str, str]:
    """The PDF's document information dictionary, read from its bytes (no PDF library)."""
    match = re.search(rb"<<\s*/Author.*?>>", content, re.S)
    assert match is not None, "no Info dictionary"
    return {
        k.decode(): v.decode("latin-1")
        for k, v in re.findall(rb"/(\w+) \((.*?)\)", match.group(0), re.S)
    }


def test_the_pdf_has_its_metadata_and_numbers_its_pages_x_of_y(as_auditor, tmp_path):
    response = as_auditor.get("/api/v1/audit/report?format=pdf")
    report_json = as_auditor.get(
        f"/api/v1/audit/report?format=json&at={response['X-Snapshot-Seq']}"
    ).content
    info = _info(response.content)
    assert info["Title"] == "Audit report: Consortium"
    assert info["Author"].startswith("Consortium portal, exported by user:")
    assert hashlib.sha256(report_json).hexdigest() in info["Subject"]
    signed_at = json.loads(report_json)["signed_head"]["signed_at"]
    stamp = signed_at[:19].replace("-", "").replace(":", "").replace("T", "")
    assert info["CreationDate"] == f"D:{stamp}+00'00'"
    pages = int(re.search(rb"/Count (\d+)", response.content).group(1))  # type: ignore[union-attr]
    assert pages >= 2
    text = _pdf_text(response.content, tmp_path)
    assert [f"page {n} of {pages}" in text for n in range(1, pages + 1)] == [True] * pages
    assert f"page {pages + 1} of" not in text


def test_the_pdf_starts_with_a_summary_in_plain_words(as_auditor, tmp_path):
    response = as_auditor.get("/api/v1/audit/report?format=pdf&rounds=1,2")
    first_page = subprocess.run(
        ["pdftotext", "-l", "1", "-", "-"], input=response.content, capture_output=True
    ).stdout.decode()
    text = " ".join(first_page.split())
    assert "Summary" in text
    assert "2 rounds (numbers 1 to 2; 2 training): 1 failed, 1 published." in text
    assert "The last shared model is from round 1, combined from 3 banks" in text
    assert "Differential privacy was not used" in text
    assert "No round is disputed" in text
    assert "page 1 of" in text

"""Reports: one signed dict rendered as JSON, CSV and PDF, checked against the database."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.chain import report_body_sha256
from audit.models import AuditEvent, Checkpoint
from audit.report import Selection, SelectionError
from audit.selectors import audit_head
from consortium.audit_api.selectors import selection_parse
from consortium.audit_api.services import audit_report_export
from consortium.rounds.models import Round, Submission

pytestmark = pytest.mark.django_db


def _export(fmt: str = "json", **selection) -> tuple[bytes, dict]:
    export = audit_report_export(selection=Selection(**selection), fmt=fmt, actor="test")
    return export.content, export.report


def test_the_json_report_holds_each_round_as_the_database_has_it(round_history):
    content, report = _export(rounds=(1, 2))
    assert json.loads(content) == report
    published, failed = (r for r in report["rounds"])
    subs = Submission.objects.filter(round=round_history.published).select_related("bank")
    assert published["participants"] == sorted(s.bank.slug for s in subs)
    assert {s["digest"] for s in published["submissions"]} == {s.digest for s in subs}
    assert all(s["signature_valid"] and s["in_manifest"] for s in published["submissions"])
    assert all(s["recorded_in_trail"] for s in published["submissions"])
    assert published["manifest"] == round_history.published.manifest
    assert published["policy"] == {"name": "default", "version": 1}
    assert published["privacy"]["min_banks"] == 3
    assert published["privacy"]["differential_privacy"] == "off"
    assert [j["bank"] for j in published["rejections"]] == ["alpha"]
    assert "CKKSVEC1" in published["rejections"][0]["reason"]
    assert published["metrics"] == [
        {
            "bank": "alpha",
            "metrics": {"auprc": 0.42, "recall_at_budget": 0.5},
            "self_reported": True,
        }
    ]
    assert failed["state"] == "failed" and "only 1 of the 3" in failed["failure_reason"]
    assert failed["participants"] == ["alpha"] and failed["manifest"] is None
    assert [e["fingerprint"] for e in report["key_epochs"]] == [
        round_history.published.key_epoch.fingerprint
    ]


def test_a_rounds_report_carries_a_contiguous_run_of_events_with_their_checkpoints(round_history):
    _, report = _export(rounds=(1,))
    seqs = [e["seq"] for e in report["events"]]
    assert seqs == list(range(seqs[0], seqs[-1] + 1))
    opened = AuditEvent.objects.get(action="round.opened", data__round=1)
    published = AuditEvent.objects.get(action="round.published", data__round=1)
    assert seqs[0] == opened.seq and published.seq in seqs
    assert report["chain"]["first_prev_hash"] == opened.prev_hash
    close = Checkpoint.objects.get(reason="round 1 published")
    assert close.as_record() in report["checkpoints"]
    assert close.seq == published.seq  # signed in the same transaction as the close
    assert report["signed_head"]["reason"].startswith("report snapshot")


def test_the_report_is_signed_over_its_whole_content(round_history):
    _, report = _export()
    assert report["signature"]["body_sha256"] == report_body_sha256(report)
    assert report["verification"]["ok"] is True
    assert report["portal_public_key"] == report["signature"]["public_key"]


def test_exporting_signs_a_snapshot_of_the_head_then_records_an_event_after_it(round_history):
    before, head = Checkpoint.objects.count(), audit_head().seq
    _, report = _export("csv")
    event = AuditEvent.objects.filter(action="audit.report_exported").last()
    assert event is not None and event.actor == "test" and event.data["format"] == "csv"
    assert event.seq == head + 1
    assert Checkpoint.objects.count() == before + 1
    checkpoint = Checkpoint.objects.last()
    assert checkpoint is not None and checkpoint.seq == head
    # The whole-trail report runs to the snapshot's head: its own export event is not in it.
    assert report["events"][-1]["seq"] == head == event.data["snapshot_seq"]
    assert event.data["report_sha256"] == report["signature"]["body_sha256"]


def test_a_period_report_holds_the_events_of_that_period(round_history):
    middle = AuditEvent.objects.get(action="round.published", data__round=1)
    _, report = _export(
        since=middle.created_at, until=middle.created_at + timedelta(microseconds=1)
    )
    assert [e["seq"] for e in report["events"]] == [middle.seq]
    assert [r["number"] for r in report["rounds"]] == [1]


def test_the_csv_has_one_row_per_submission_rejection_and_event(round_history):
    content, report = _export("csv", rounds=(1, 2))
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    subs = [r for r in rows if r["record"] == "submission"]
    assert len(subs) == Submission.objects.filter(round__number__in=[1, 2]).count()
    assert {(int(r["round"]), r["bank"], r["digest"]) for r in subs} == set(
        Submission.objects.filter(round__number__in=[1, 2]).values_list(
            "round__number", "bank__slug", "digest"
        )
    )
    assert all(r["status"] == "signature valid" for r in subs)
    assert [r["bank"] for r in rows if r["record"] == "rejection"] == ["alpha"]
    events = [r for r in rows if r["record"] == "event"]
    assert [int(r["seq"]) for r in events] == [e["seq"] for e in report["events"]]
    assert events[0]["hash"] == report["events"][0]["hash"]
    failure = next(r for r in rows if r["record"] == "failure")
    assert failure["round"] == "2" and "only 1 of the 3" in failure["detail"]


def _pdf_text(content: bytes, tmp_path) -> str:
    path = tmp_path / "report.pdf"
    path.write_bytes(content)
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def test_the_pdf_shows_the_figures_in_the_database(round_history, tmp_path):
    content, report = _export("pdf", rounds=(1, 2))
    assert content.startswith(b"%PDF-")
    text = _pdf_text(content, tmp_path)
    assert "Chain intact" in text
    # The export event came after the snapshot that the report (and its check) describe.
    assert f"{AuditEvent.objects.count() - 1} events" in text
    for sub in Submission.objects.filter(round__number__in=[1, 2]).select_related("bank"):
        assert sub.digest in text
    published = Round.objects.get(number=1)
    assert published.aggregate_digest in text
    assert published.key_epoch.fingerprint in text
    assert "only 1 of the 3 required updates arrived by the deadline" in " ".join(text.split())
    assert "default v1" in text
    assert report["signed_head"]["head_hash"] in text
    assert report["signature"]["body_sha256"] in text
    summary = next(line for line in text.splitlines() if line.strip().startswith("1 "))
    assert summary.split()[:7] == ["1", "training", "published", "default", "v1", "3", "3"]


def test_the_pdf_says_so_when_the_chain_is_broken(round_history, tamper, tmp_path):
    victim = AuditEvent.objects.get(action="round.opened", data__round=2)
    tamper.sql("UPDATE audit_auditevent SET actor = 'mallory' WHERE seq = %s", [victim.seq])
    content, report = _export("pdf", rounds=(1,))
    assert report["verification"]["first_bad_seq"] == victim.seq
    assert f"CHAIN VERIFICATION FAILED at event #{victim.seq}" in _pdf_text(content, tmp_path)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"rounds": "1,x"}, "round numbers"),
        ({"rounds": "99"}, "no such round: 99"),
        ({"rounds": "1", "since": "2026-01-01"}, "not both"),
        ({"since": "yesterday"}, "ISO datetime"),
        ({"since": "2026-02-02", "until": "2026-02-01"}, "before until"),
    ],
)
def test_a_bad_selection_is_refused_with_a_reason(round_history, given, message):
    with pytest.raises(SelectionError, match=message):
        selection_parse(**given)


def test_an_until_date_includes_that_whole_day():
    selection = selection_parse(since="2026-11-01", until="2026-11-27")
    assert selection.until == datetime(2026, 11, 28, tzinfo=UTC)


@pytest.mark.parametrize("fmt", ["json", "csv", "pdf"])
def test_the_export_command_writes_the_file_and_records_it(round_history, tmp_path, fmt):
    out = tmp_path / f"report.{fmt}"
    call_command("audit_export", "--format", fmt, "--out", str(out), "--rounds", "1")
    assert out.stat().st_size > 0
    event = AuditEvent.objects.filter(action="audit.report_exported").last()
    assert event is not None
    assert event.actor.startswith("cli:")
    named = {"format": fmt, "rounds": [1], "since": None, "until": None}
    assert {k: event.data[k] for k in named} == named
    # The event names the file it gave out and the snapshot that file shows.
    assert event.data["file_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert event.data["snapshot_seq"] == event.seq - 1


def test_the_export_command_explains_a_bad_round(round_history, tmp_path):
    with pytest.raises(CommandError, match="no such round: 7"):
        call_command("audit_export", "--out", str(tmp_path / "r.json"), "--rounds", "7")
    assert not AuditEvent.objects.filter(action="audit.report_exported").exists()


def test_under_a_dp_policy_the_report_shows_the_settings_and_each_banks_epsilon(
    client, ckks, epoch, bank_alpha, bank_beta, bank_gamma, tmp_path
):
    from django.utils import timezone as tz

    from consortium.rounds.selectors import round_in_flight
    from consortium.rounds.services import policy_create, round_open_next, scheduler_tick
    from tests.conftest import encrypted_update, upload_headers

    policy_create(
        name="private",
        actor="test",
        activate=True,
        min_banks=3,
        max_rounds=2,
        deadline=timedelta(minutes=10),
        normalize_features=False,
        dp_target_epsilon=4.0,
        dp_delta=1e-5,
        model_spec={"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"},
        secure_aggregation="v1",  # sends v1 containers
    )
    round_open_next(tz.now())
    rnd = round_in_flight()
    assert rnd is not None
    cohort = [(bank_alpha, "1.25"), (bank_beta, "2.5"), (bank_gamma, "0.5")]
    for seed, (persona, eps) in enumerate(cohort):
        body, _ = encrypted_update(ckks, rnd.vector_length, seed=seed)
        headers = upload_headers(persona, rnd.number, body, epsilon=eps, budget_left="true")
        response = client.put(
            f"/api/v1/rounds/{rnd.number}/update",
            data=body,
            content_type="application/octet-stream",
            **headers,
        )
        assert response.status_code == 201, response.content
    scheduler_tick()
    content, report = _export("pdf", rounds=(rnd.number,))
    privacy = report["rounds"][0]["privacy"]
    assert privacy["differential_privacy"] == "on"
    assert privacy["dp_settings"]["dp_target_epsilon"] == 4.0
    assert privacy["epsilon_spent"] == {"alpha": 1.25, "beta": 2.5, "gamma": 0.5}
    text = " ".join(_pdf_text(content, tmp_path).split())
    assert "differential privacy ON (DP-SGD at each bank): " in text
    assert "target epsilon = 4.0" in text
    assert "alpha: 1.250, beta: 2.500, gamma: 0.500" in text

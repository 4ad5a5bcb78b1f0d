"""Processes die mid-flight (SIGKILL, no clean-up): a node mid-upload, the web tier
mid-upload, the scheduler mid-aggregation. Nothing accepted is lost, nothing half-done is
kept, nothing is published twice, and the round completes."""

from __future__ import annotations

import hashlib
import io
import signal
import threading
import time
from typing import Any

import numpy as np
import pytest

from he.codec import decrypt_vector
from tests.conftest import PARAMS
from tests.faults.conftest import next_round, start_half_upload, wait_for, write_update

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_a_node_killed_mid_upload_leaves_no_row_or_blob_and_its_retry_completes_on_time(
    consortium, ckks, tmp_path
):
    portal, members = consortium
    url = portal.url()
    rnd = next_round(portal, members["alpha"])
    number = rnd.number
    updates = {s: write_update(ckks, rnd, m, tmp_path, seed=i) for i, (s, m) in
               enumerate(members.items())}  # fmt: skip

    path, digest, signature, _ = updates["alpha"]
    node = start_half_upload(url, members["alpha"], number, path, digest, signature)
    wait_for("the partial body to reach the portal", portal.temp_files, timeout=10)
    node.send_signal(signal.SIGKILL)
    node.wait()

    # The portal notices the short body, refuses it and removes its temporary file.
    wait_for("the partial upload's temp file to go", lambda: not portal.temp_files(), timeout=15)
    assert portal.submitted(number) == {}
    assert portal.blobs("uploads", number) == []
    # Django logs the 400 after the response, which may be after the temp file went.
    refused = f"Bad Request: /api/v1/rounds/{number}/update"
    wait_for("the refusal in the web log", lambda: refused in portal.log("web"), timeout=10)

    # The node comes back and retries; the others upload as usual.
    for slug, (path, digest, signature, _) in updates.items():
        answer = members[slug].client(url).upload_update(number, path, digest, signature)
        assert answer.digest == digest
    wait_for("publication", lambda: portal.round_row(number)["state"] == "published")
    row = portal.round_row(number)
    assert row["closed_at"] < row["deadline_at"]  # everyone was in: no wait for the deadline
    assert sorted(i["bank"] for i in row["manifest"]["inputs"]) == ["alpha", "beta", "gamma"]
    assert len(portal.blobs("uploads", number)) == 3


def test_the_web_tier_killed_during_an_upload_loses_no_accepted_update(consortium, ckks, tmp_path):
    portal, members = consortium
    url = portal.url()
    rnd = next_round(portal, members["alpha"])
    number = rnd.number
    updates = {s: write_update(ckks, rnd, m, tmp_path, seed=i) for i, (s, m) in
               enumerate(members.items())}  # fmt: skip
    path, digest, signature, _ = updates["beta"]
    members["beta"].client(url).upload_update(number, path, digest, signature)

    # gamma is halfway through its upload when every gunicorn process is SIGKILLed.
    path, digest, signature, _ = updates["gamma"]
    stalled = start_half_upload(url, members["gamma"], number, path, digest, signature)
    wait_for("gamma's partial body on disk", portal.temp_files, timeout=10)
    portal.kill("web")
    stalled.kill()
    stalled.wait()

    # While the portal is down, alpha's node tries to upload: it backs off and retries.
    path, digest, signature, _ = updates["alpha"]
    alpha = members["alpha"].client(url, max_retries=10)
    outcome: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: outcome.update(answer=alpha.upload_update(number, path, digest, signature))
    )
    worker.start()
    time.sleep(2)
    assert worker.is_alive() and alpha.retries_made >= 1

    # What was accepted before the crash is all there; the half upload left no row and
    # no blob (only a temp file, which the scheduler's sweep removes once it is stale).
    assert set(portal.submitted(number)) == {"beta"}
    assert [p.name.split("-")[0] for p in portal.blobs("uploads", number)] == ["beta"]
    assert (
        hashlib.sha256(portal.blobs("uploads", number)[0].read_bytes()).hexdigest()
        == (updates["beta"][1])
    )

    portal.start_web()
    worker.join(timeout=60)
    assert outcome["answer"].digest == updates["alpha"][1]
    path, digest, signature, _ = updates["gamma"]
    members["gamma"].client(url).upload_update(number, path, digest, signature)
    wait_for("publication", lambda: portal.round_row(number)["state"] == "published")
    inputs = portal.round_row(number)["manifest"]["inputs"]
    assert {i["bank"]: i["digest"] for i in inputs} == {s: u[1] for s, u in updates.items()}


def test_the_scheduler_killed_during_aggregation_publishes_exactly_once_after_restart(
    consortium, ckks, tmp_path
):
    portal, members = consortium
    url = portal.url()
    rnd = next_round(portal, members["alpha"])
    # Test-only hook: pause after the aggregate blob is written, before publishing commits.
    portal.stop("scheduler")
    portal.start_scheduler(CONSORTIUM_FAULT_SLEEP_IN_AGGREGATION="60")
    published_before = portal.audit_count("round.published")
    aggregating_before = portal.audit_count("round.aggregating")
    number = rnd.number
    plains = []
    for i, (slug, member) in enumerate(members.items()):
        path, digest, signature, plain = write_update(ckks, rnd, member, tmp_path, seed=10 + i)
        member.client(url).upload_update(number, path, digest, signature)
        plains.append(plain)

    wait_for(
        "the scheduler to reach the fault pause",
        lambda: "pausing 60s before publishing" in portal.log("scheduler"),
    )
    portal.kill("scheduler")
    portal.kill("web")  # the whole portal goes down, not just the scheduler

    row = portal.round_row(number)
    assert row["state"] == "aggregating" and row["aggregate_digest"] == ""
    assert portal.audit_count("round.published") == published_before
    # Whatever sits in aggregates/ is complete (written to a temp file, then renamed) and
    # is not served: the round is not published.
    assert all(p.suffix == ".ckks" for p in (portal.var_dir / "blobs" / "aggregates").iterdir())
    assert not any(p.stat().st_size == 0 for p in portal.blobs("aggregates"))

    portal.start_web()
    portal.start_scheduler()
    wait_for("publication after restart", lambda: portal.round_row(number)["state"] == "published")
    time.sleep(2)  # a few more ticks: nothing may publish it again
    assert portal.audit_count("round.published") == published_before + 1
    assert portal.audit_count("round.aggregating") == aggregating_before + 1
    row = portal.round_row(number)
    assert len(row["manifest"]["inputs"]) == 3
    blob = (portal.var_dir / "blobs" / row["aggregate_blob"]).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == row["aggregate_digest"]
    summed = decrypt_vector(ckks.secret, io.BytesIO(blob), PARAMS)
    assert np.max(np.abs(summed - np.sum(plains, axis=0))) < 1e-3
    verified = portal.manage("audit_verify")
    assert verified.returncode == 0, verified.stderr

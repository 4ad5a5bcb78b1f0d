"""A worker's memory does not grow with the upload size: a body up to the round's limit
streams to disk in pieces, and a larger one is refused before it is read."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import requests

from he.wire import MAGIC
from tests.faults.conftest import next_round, wait_for, write_update

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

MB = 1024 * 1024


def _peak_rss_mb(master_pid: int) -> dict[int, float]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    peaks = {}
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks[int(pid)] = int(line.split()[1]) / 1024
    return peaks


def _put(url: str, member, number: int, body: bytes) -> requests.Response:
    digest = hashlib.sha256(body).hexdigest()
    _, signature = member.signed(number, body)
    return requests.put(
        f"{url}/api/v1/rounds/{number}/update",
        data=body,
        headers={
            "Authorization": f"Bearer {member.credential}",
            "X-Update-Digest": digest,
            "X-Update-Signature": signature,
        },
        timeout=120,
    )


def test_a_64_mb_upload_raises_no_workers_peak_memory_by_more_than_a_few_mb(
    consortium, ckks, tmp_path
):
    portal, members = consortium
    url = portal.url()
    rnd = next_round(portal, members["alpha"])
    header = MAGIC + b"\0\0\0\x02{}"
    big = header + b"\0" * (64 * MB)
    # 64 MB is far above what this round's ciphertexts can take: refused before it is read,
    # and the answer names the round's limit.
    refused = _put(url, members["alpha"], rnd.number, big)
    assert refused.status_code == 413, refused.text
    limit = refused.json()["extra"]["limit"]
    # A well-formed start padded to exactly the limit: taken in (streamed to a temp file in
    # pieces), validated one chunk at a time, then refused.
    at_limit = header + b"\0" * (limit - len(header))
    for _ in range(4):  # every worker has handled an upload before the baseline
        assert _put(url, members["alpha"], rnd.number, at_limit).status_code == 400
    before = _peak_rss_mb(portal.procs["web"].pid)
    # (A temp file an earlier test's SIGKILL left behind waits for the hourly sweep.)
    leftovers = portal.temp_files()
    for _ in range(2):
        assert _put(url, members["alpha"], rnd.number, big).status_code == 413
        assert _put(url, members["alpha"], rnd.number, at_limit).status_code == 400
    after = _peak_rss_mb(portal.procs["web"].pid)
    grown = {pid: after[pid] - before.get(pid, after[pid]) for pid in after}
    assert max(grown.values()) < 16, (before, after)
    assert portal.temp_files() == leftovers  # and nothing of it stays on disk

    # Finish the round, as every fault test does, for the tests after this one.
    for i, member in enumerate(members.values()):
        path, digest, signature, _ = write_update(ckks, rnd, member, tmp_path, seed=i)
        member.client(url).upload_update(rnd.number, path, digest, signature)
    wait_for("publication", lambda: portal.round_row(rnd.number)["state"] == "published")

"""The database goes away for a while: every request fails fast with a 503 and a message,
nodes back off and retry, the scheduler survives, and nothing is corrupted."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import pytest
import requests

from tests.faults.conftest import next_round, wait_for, write_update

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

UNAVAILABLE = "the portal's database is unavailable; retry shortly"
AUTH_CACHE_SECONDS = 5  # the portal's default


def test_a_database_outage_is_a_503_with_a_message_and_the_round_completes_after_it(
    consortium, pg_server, ckks, tmp_path
):
    portal, members = consortium
    url = portal.url()
    rnd = next_round(portal, members["alpha"])
    number = rnd.number
    updates = {
        slug: write_update(ckks, rnd, m, tmp_path, seed=i)
        for i, (slug, m) in enumerate(members.items())
    }
    path, digest, signature, _ = updates["alpha"]
    members["alpha"].client(url).upload_update(number, path, digest, signature)
    accepted_before = portal.audit_count("update.accepted")
    # A worker trusts a credential it checked for a read this long without the database
    # (CONSORTIUM_AUTH_CACHE_SECONDS): let beta's, if an earlier test polled with it, lapse.
    time.sleep(AUTH_CACHE_SECONDS)

    pg_server.stop()
    try:
        headers = {"Authorization": f"Bearer {members['beta'].credential}"}
        for endpoint in ("/api/v1/rounds/current", "/api/v1/banks/me", "/api/v1/rounds/"):
            started = time.monotonic()
            response = requests.get(url + endpoint, headers=headers, timeout=30)
            assert response.status_code == 503, response.text
            assert response.json() == {"message": UNAVAILABLE, "extra": {}}
            assert response.headers["Retry-After"] == "5"
            assert time.monotonic() - started < 5  # fails fast, does not hang the worker
        path, digest, signature, _ = updates["beta"]
        refused = requests.put(
            f"{url}/api/v1/rounds/{number}/update",
            data=path.read_bytes(),
            headers={**headers, "X-Update-Digest": digest, "X-Update-Signature": signature},
            timeout=30,
        )
        assert refused.status_code == 503
        ready = requests.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"].startswith("unreachable")
        assert requests.get(f"{url}/healthz", timeout=10).status_code == 200  # alive

        # beta's node keeps trying through the outage (exponential backoff on 503).
        beta = members["beta"].client(url, max_retries=12)
        outcome: dict[str, Any] = {}
        worker = threading.Thread(
            target=lambda: outcome.update(
                answer=beta.upload_update(number, path, digest, signature)
            )
        )
        worker.start()
        wait_for("beta to retry", lambda: beta.retries_made >= 2, timeout=20)
        assert portal.procs["scheduler"].poll() is None  # the scheduler rides it out
    finally:
        pg_server.start()
    worker.join(timeout=90)
    assert outcome["answer"].digest == digest

    path, digest, signature, _ = updates["gamma"]
    members["gamma"].client(url).upload_update(number, path, digest, signature)
    wait_for("publication", lambda: portal.round_row(number)["state"] == "published")
    assert "database unavailable" in portal.log("scheduler")

    # Nothing corrupted: each stored blob is exactly what its bank signed, once.
    assert portal.submitted(number) == {slug: u[1] for slug, u in updates.items()}
    stored = [hashlib.sha256(b.read_bytes()).hexdigest() for b in portal.blobs("uploads", number)]
    assert sorted(stored) == sorted(u[1] for u in updates.values())
    assert portal.audit_count("update.accepted") == accepted_before + 2
    verified = portal.manage("audit_verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

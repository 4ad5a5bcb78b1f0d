"""Under gunicorn with several workers, /metrics adds up every worker's counts."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from simulation.processes import ROOT, free_port, wait_ready, web_argv

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

WORKERS = 3


@dataclass
class Gunicorn:
    url: str
    token: str
    multiproc_dir: Path
    master: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """The portal under gunicorn with three workers.

    No migrations: requests to /healthz and the request counters need no tables (the
    scrape-time database gauges then report consortium_database_up 0), and the test
    stays a few seconds shorter."""
    var = tmp_path_factory.mktemp("multiproc")
    multiproc = var / "prometheus"
    multiproc.mkdir()
    (multiproc / "counter_999999.db").write_bytes(b"stale")  # a previous run's leftovers
    token = secrets.token_urlsafe(16)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        CONSORTIUM_VAR_DIR=str(var),
        DJANGO_SETTINGS_MODULE="consortium.settings",
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
        CONSORTIUM_METRICS_TOKEN=token,
    )
    port = free_port()
    log = open(var / "gunicorn.log", "wb")
    master = subprocess.Popen(
        web_argv(port, workers=WORKERS), env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc=master, log=var / "gunicorn.log")
    try:
        yield Gunicorn(url, token, multiproc, master)
    finally:
        master.send_signal(signal.SIGINT)  # quick shutdown: nothing to drain here
        master.wait(timeout=30)
        log.close()


def _counter(server: Gunicorn, view: str) -> float:
    response = requests.get(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.token}"}, timeout=5
    )
    assert response.status_code == 200
    for family in text_string_to_metric_families(response.text):
        if family.name == "consortium_http_requests":
            return sum(
                s.value
                for s in family.samples
                if s.name.endswith("_total") and s.labels["view"] == view
            )
    return 0.0


def _workers_that_served(server: Gunicorn, view: str) -> set[str]:
    """Worker pids whose counter files hold a series for ``view``."""
    marker = f'"{view}"'.encode()
    return {
        path.stem.rsplit("_", 1)[1]
        for path in server.multiproc_dir.glob("counter_*.db")
        if marker in path.read_bytes()
    }


def test_gunicorn_starts_from_an_empty_metrics_directory(gunicorn):
    assert not (gunicorn.multiproc_dir / "counter_999999.db").exists()


def test_n_requests_over_three_workers_are_counted_n_times_not_n_over_three(gunicorn):
    # Concurrent batches until at least two workers have served (on a loaded machine one
    # worker can take a whole batch); then every request sent must be counted once.
    sent = 0
    with ThreadPoolExecutor(max_workers=6) as pool:
        while sent < 600 and len(_workers_that_served(gunicorn, "healthz")) < 2:
            statuses = list(
                pool.map(
                    lambda _: requests.get(f"{gunicorn.url}/healthz", timeout=10).status_code,
                    range(60),
                )
            )
            assert statuses == [200] * 60
            sent += 60
    assert len(_workers_that_served(gunicorn, "healthz")) >= 2  # the sum is really across workers
    assert _counter(gunicorn, "healthz") == sent


def test_a_dead_workers_counts_stay_in_the_sum(gunicorn):
    before = _counter(gunicorn, "healthz")
    served = _workers_that_served(gunicorn, "healthz")
    os.kill(int(next(iter(served))), signal.SIGKILL)  # gunicorn replaces it
    deadline = time.monotonic() + 30
    while True:
        try:
            total = _counter(gunicorn, "healthz")
            break
        except requests.RequestException:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert total == before

"""benchmarks/load.py's own parts: the routes of each layout, the uploaders' niceness, the
CPU accounting, and how polls are split into idle and during the burst."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from tests.benchmarks.conftest import _load_script


@pytest.fixture(scope="module")
def load() -> ModuleType:
    return _load_script("load")


def own_niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_the_split_layout_polls_the_reads_pool_and_uploads_to_the_uploads_pool(load):
    pools = {name: SimpleNamespace(name=name) for name in ("all", "reads", "uploads")}
    portal = object.__new__(load.Portal)
    portal.pools = pools
    assert portal.routes("split") == (pools["reads"], pools["uploads"])
    assert portal.routes("one") == (pools["all"], pools["all"])


def test_the_uploaders_run_in_a_process_of_their_own_at_the_niceness_asked(load):
    uploaders = load.Uploaders(7)
    try:
        assert own_niceness(uploaders.pid) == min(19, own_niceness(os.getpid()) + 7)
    finally:
        uploaders.close()


def test_the_cpu_of_a_process_tree_counts_its_busy_child(load):
    busy = (
        "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
        "print('done', flush=True)\ntime.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", busy], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "done"
        assert load.tree_cpu_seconds(child.pid) >= 0.3
    finally:
        child.kill()
        child.wait()


def test_polls_sent_during_the_burst_are_counted_apart_from_the_idle_ones(load):
    # (sent at, lag, latency, status): idle ones take 10 ms, those in the burst 300 ms.
    idle = [(float(t), 0.001, 0.010, 200) for t in range(0, 10)]
    during = [(10 + t / 10, 0.050, 0.300, 200) for t in range(10)]
    failed = [(10.5, 0.0, 0.0, 0)]
    poller = SimpleNamespace(samples=idle + during + failed, started=0.0, ended=21.0)
    figures = load.poll_figures(poller, (10.0, 11.0), rate=1.0)
    assert figures["sent"] == 21 and figures["errors"] == 1
    assert figures["idle_p99_ms"] == 10.0
    assert figures["during_uploads_p50_ms"] == figures["during_uploads_p99_ms"] == 300.0
    assert figures["during_uploads_p99_send_lag_ms"] == 50.0


def test_the_summary_takes_the_median_of_the_repeats_of_each_layout_and_niceness(load):
    def burst(layout: str, nice: int, p99: float) -> dict:
        polls = {"during_uploads_p99_ms": p99, "during_uploads_p50_ms": 1.0, "idle_p99_ms": 2.0}
        uploads = {"accepted": 50, "errors": 0, "wall_seconds": 5.0}
        return {"layout": layout, "uploaders_niceness": nice, "polls": polls, "uploads": uploads}

    rows = load.summary(
        [burst("one", 0, 500), burst("split", 0, 40), burst("one", 0, 700), burst("split", 0, 60)]
    )
    assert [(r["layout"], r["median_poll_during_uploads_p99_ms"]) for r in rows] == [
        ("one", 600.0),
        ("split", 50.0),
    ]
    assert rows[0]["accepted"] == 100 and rows[0]["bursts"] == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["--layouts", "one,two"],
        ["--client-niceness", "20"],
        ["--client-niceness", "-1"],
        ["--upload-niceness", "20"],
        ["--upload-niceness", "lowest"],
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(load, monkeypatch, argv):
    monkeypatch.setattr(sys, "argv", ["load.py", *argv])
    with pytest.raises(SystemExit) as stopped:
        load.parse_args()
    assert stopped.value.code == 2


@pytest.mark.parametrize(("raw", "niceness"), [("10", 10), ("0", 0), ("idle", "idle")])
def test_the_uploads_pool_takes_a_niceness_or_idle(load, monkeypatch, raw, niceness):
    monkeypatch.setattr(sys, "argv", ["load.py", "--upload-niceness", raw])
    assert load.parse_args().upload_niceness == niceness

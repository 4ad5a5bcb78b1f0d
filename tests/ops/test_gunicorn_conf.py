"""consortium/gunicorn.conf.py: the multiprocess directory is always set, clean at start,
and a directory the config made itself is removed at exit; workers are niced as asked."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[2] / "consortium" / "gunicorn.conf.py"


def test_without_a_directory_the_config_makes_one_and_removes_it_at_exit(monkeypatch):
    # setenv first, so that the variable the config sets is undone after the test.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "placeholder")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    hooks = runpy.run_path(str(CONF))
    made = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert made.is_dir() and made.name.startswith("prometheus-multiproc-")
    hooks["on_exit"](None)
    assert not made.exists()


def test_a_given_directory_is_emptied_at_start_and_kept_at_exit(monkeypatch, tmp_path):
    given = tmp_path / "multiproc"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    hooks = runpy.run_path(str(CONF))
    hooks["on_starting"](None)
    (given / "counter_123.db").write_bytes(b"old")
    (given / "notes.txt").write_text("not ours")
    hooks["on_starting"](None)
    assert sorted(p.name for p in given.iterdir()) == ["notes.txt"]
    hooks["on_exit"](None)
    assert given.is_dir()


@pytest.mark.parametrize(
    ("raw", "niceness"), [(None, 0), ("", 0), ("0", 0), ("10", 10), ("19", 19)]
)
def test_each_worker_is_niced_by_the_configured_amount(monkeypatch, raw, niceness):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "placeholder")
    if raw is None:
        monkeypatch.delenv("CONSORTIUM_WEB_NICENESS", raising=False)
    else:
        monkeypatch.setenv("CONSORTIUM_WEB_NICENESS", raw)
    calls: list[int] = []
    monkeypatch.setattr(os, "nice", calls.append)
    hooks = runpy.run_path(str(CONF))
    hooks["post_fork"](None, None)
    assert calls == ([niceness] if niceness else [])


@pytest.mark.parametrize("raw", ["20", "-5", "ten", "1.5", "idle19"])
def test_a_bad_niceness_stops_gunicorn_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "placeholder")
    monkeypatch.setenv("CONSORTIUM_WEB_NICENESS", raw)
    with pytest.raises(
        SystemExit, match="CONSORTIUM_WEB_NICENESS must be a whole number 0-19 or idle"
    ):
        runpy.run_path(str(CONF))


@pytest.mark.parametrize("raw", ["idle", "IDLE", " idle "])
def test_idle_puts_the_worker_and_what_it_starts_in_the_idle_scheduling_class(tmp_path, raw):
    # In a child process of its own: SCHED_IDLE cannot be undone without privileges.
    script = f"""
import os, runpy, subprocess, sys
hooks = runpy.run_path({str(CONF)!r})
hooks["post_fork"](None, None)
child = subprocess.run(
    [sys.executable, "-c", "import os; print(os.sched_getscheduler(0))"],
    capture_output=True, text=True, check=True,
)
print(os.sched_getscheduler(0), child.stdout.strip(), os.SCHED_IDLE)
"""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "CONSORTIUM_WEB_NICENESS": raw}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    worker, helper, idle = out.stdout.split()
    assert worker == helper == idle

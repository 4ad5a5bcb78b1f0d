"""consortium/gunicorn.conf.py: the multiprocess directory is always set, clean at start,
and a directory the config made itself is removed at exit."""

from __future__ import annotations

import os
import runpy
from pathlib import Path

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

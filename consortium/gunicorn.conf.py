"""gunicorn settings of the portal's web tier: Prometheus multiprocess bookkeeping.

Run ``gunicorn -c consortium/gunicorn.conf.py consortium.wsgi ...`` (the image copies
this file to /app/gunicorn.conf.py). Command-line flags still set binds, workers and
timeouts; this file only adds the hooks below.

Each worker writes its counters and histograms to files in ``PROMETHEUS_MULTIPROC_DIR``
and ``/metrics`` adds them up (see consortium/metrics/). When the variable is not set,
a fresh temporary directory is used (and removed at exit): several workers never count
separately by accident. The Helm chart sets it to a memory-backed emptyDir.

``CONSORTIUM_WEB_NICENESS`` (0-19, default 0) lowers every worker's CPU priority by that
much: a pool that serves only uploads runs niced, so that on a shared host the pool
answering status polls gets the cores first (docs/operations.md, "Uploads do not starve
reads"). ``idle`` puts the workers (and their validation processes, which inherit it) in
Linux's ``SCHED_IDLE`` class instead: they run only when no other process wants the CPU.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

IDLE = "idle"


def worker_niceness(raw: str | None) -> int | str:
    """``CONSORTIUM_WEB_NICENESS`` as a niceness 0-19 or ``"idle"``; unset or empty is 0.

    A bad value stops gunicorn before it starts a worker, naming the variable.
    """
    if raw is None or not raw.strip():
        return 0
    if raw.strip().lower() == IDLE:
        if not hasattr(os, "SCHED_IDLE"):
            raise SystemExit("CONSORTIUM_WEB_NICENESS=idle needs Linux (SCHED_IDLE)")
        return IDLE
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= 19:
        raise SystemExit(
            f"CONSORTIUM_WEB_NICENESS must be a whole number 0-19 or idle, not {raw!r}"
        )
    return value


WORKER_NICENESS = worker_niceness(os.environ.get("CONSORTIUM_WEB_NICENESS"))

# Set here, in the master, before any worker imports prometheus_client.
_OWN_DIR = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _OWN_DIR = tempfile.mkdtemp(prefix="prometheus-multiproc-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _OWN_DIR


def on_starting(server: Any) -> None:
    """Start from an empty directory.

    In Kubernetes it is an emptyDir that survives a container restart: the files of the
    previous master's workers would otherwise be added to the new ones forever. Emptying
    it is a plain counter reset, which Prometheus's rate() and increase() expect.
    """
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def post_fork(server: Any, worker: Any) -> None:
    """Lower this worker's CPU priority (``CONSORTIUM_WEB_NICENESS``); its validation
    process, started next, is niced further from there (or, under ``idle``, inherits
    ``SCHED_IDLE``, as do the worker's threads: none exists yet)."""
    if WORKER_NICENESS == IDLE:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    elif WORKER_NICENESS:
        os.nice(int(WORKER_NICENESS))


def post_worker_init(worker: Any) -> None:
    """Start the worker's validation process now, not on its first upload (not waited for)."""
    from consortium.rounds.validation_pool import warm

    warm()


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges; its counters stay and keep counting in the sum."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _OWN_DIR:
        shutil.rmtree(_OWN_DIR, ignore_errors=True)

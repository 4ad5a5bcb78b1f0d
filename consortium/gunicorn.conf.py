"""gunicorn settings of the portal's web tier: Prometheus multiprocess bookkeeping.

Run ``gunicorn -c consortium/gunicorn.conf.py consortium.wsgi ...`` (the image copies
this file to /app/gunicorn.conf.py). Command-line flags still set binds, workers and
timeouts; this file only adds the hooks below, and they do nothing unless
``PROMETHEUS_MULTIPROC_DIR`` is set.

Each worker writes its counters and histograms to files in that directory and
``/metrics`` adds them up (see consortium/metrics.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def on_starting(server: Any) -> None:
    """Start from an empty directory.

    In Kubernetes it is an emptyDir that survives a container restart: the files of the
    previous master's workers would otherwise be added to the new ones forever. Emptying
    it is a plain counter reset, which Prometheus's rate() and increase() expect.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges; its counters stay and keep counting in the sum."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

"""One answer shared by a worker's threads, refreshed off the request path when it ages.

``GET /api/v1/rounds/current`` is the same for every bank. A worker computes it at most
once per ``ttl`` seconds; when an answer is older than that, the next request starts one
refresh in a background thread and is answered with the answer it has, as long as that is
younger than ``2 * ttl``. Older (or none yet), the request computes it itself, one thread
at a time while the others wait for that result.

Why: a refresh queries PostgreSQL, and during a burst of uploads a query can wait
hundreds of milliseconds. Computed on the request path, every worker's one poll a second
that found the answer expired waited that long, and so did every thread that found it
expired meanwhile: one poll in a hundred, the whole p99. So an answer is at most ``ttl``
old plus one refresh (and never ``2 * ttl``), and no poll waits on a refresh unless the
answer is that old (no polls for a while, or the database too slow or down: then the poll
fails as the query does).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

Runner = Callable[[Callable[[], None]], Any]


class StatusCache:
    """The last answer of ``compute`` and when its computation started."""

    def __init__(
        self,
        compute: Callable[[], Any],
        *,
        background: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        runner: Runner | None = None,
    ) -> None:
        """``background`` computes the same in the refresh thread (default ``compute``);
        ``runner`` starts a function off the request path (default: one thread)."""
        self._compute = compute
        self._background = background or compute
        self._clock = clock
        self._runner = runner
        self._executor: ThreadPoolExecutor | None = None
        self._entry: tuple[float, Any] | None = None
        self._lock = threading.Lock()  # held while computing: one computation at a time
        self._refreshing = False  # a refresh was started and has not ended
        self._flag_lock = threading.Lock()

    def get(self, ttl: float) -> Any:
        if ttl <= 0:
            return self._compute()
        entry = self._entry
        if entry is not None:
            age = self._clock() - entry[0]
            if age < ttl:
                return entry[1]
            if age < 2 * ttl:
                self._start_refresh()
                return entry[1]
        with self._lock:
            entry = self._entry  # another thread may have refreshed it while we waited
            if entry is not None and self._clock() - entry[0] < ttl:
                return entry[1]
            return self._store(self._compute)

    def clear(self) -> None:
        self._entry = None

    def _store(self, compute: Callable[[], Any]) -> Any:
        started = self._clock()
        value = compute()
        self._entry = (started, value)
        return value

    def _start_refresh(self) -> None:
        with self._flag_lock:
            if self._refreshing:
                return
            self._refreshing = True
        self._run(self._refresh)

    def _refresh(self) -> None:
        try:
            with self._lock:
                self._store(self._background)
        except Exception:  # the next request past 2 * ttl computes it and fails visibly
            log.warning("refreshing the cached round status failed", exc_info=True)
        finally:
            self._refreshing = False

    def _run(self, function: Callable[[], None]) -> None:
        if self._runner is not None:
            self._runner(function)
            return
        if self._executor is None:
            # Made on first use, in the worker process (never in gunicorn's master).
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="status-refresh")
        self._executor.submit(function)

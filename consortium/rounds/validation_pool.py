"""Each web worker's validation process: upload checks off the threads that answer reads.

One process per web worker (started on the first upload, or at worker start by
``gunicorn.conf.py``), spawned — never forked from a threaded worker — and niced
(``validation_worker.lower_priority``). A web thread hands it a job and waits, without the
interpreter lock, while SEAL parses the ciphertexts there. ``VALIDATION_PROCESS = False``
(``CONSORTIUM_VALIDATION_PROCESS=0``) checks in the web worker itself, as before. A
validation process that dies is replaced, and the upload that found it dead is checked in
the web worker, so no upload fails for it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

import tenseal as ts
from django.conf import settings

from consortium.rounds.validation_worker import (
    BodyJob,
    ContextMissing,
    check_body,
    lower_priority,
    run_job,
)

log = logging.getLogger(__name__)

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_owner = 0  # the pid that made _pool: a forked child makes its own
_sent: set[str] = set()  # fingerprints whose context the current process holds


def validate(
    job: BodyJob, context: Callable[[], ts.Context], raw: Callable[[], bytes]
) -> tuple[str, int]:
    """Check ``job`` in the validation process (or here, when it is off or fails).

    ``context`` gives the epoch's parsed public context (for a check here), ``raw`` its
    stored bytes (sent to the validation process once per epoch).
    """
    if not settings.VALIDATION_PROCESS:
        return check_body(job, context())
    try:
        return _remote(job, raw)
    except BrokenProcessPool:
        log.warning("the validation process died; checking this upload in the web worker")
        _reset()
        return check_body(job, context())


def _remote(job: BodyJob, raw: Callable[[], bytes]) -> tuple[str, int]:
    pool = _executor()
    if job.fingerprint in _sent:
        try:
            return pool.submit(run_job, job).result()
        except ContextMissing:
            pass  # a replaced process: send the context again
    result = pool.submit(run_job, replace(job, context=raw())).result()
    _sent.add(job.fingerprint)
    return result


def _executor() -> ProcessPoolExecutor:
    global _pool, _owner
    with _lock:
        if _pool is None or _owner != os.getpid():
            _pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=lower_priority,
            )
            _owner = os.getpid()
            _sent.clear()
        return _pool


def _reset() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None
        _sent.clear()


def warm() -> None:
    """Start this worker's validation process now rather than on the first upload."""
    if settings.VALIDATION_PROCESS:
        _executor().submit(os.getpid)


def validator_pid() -> int:
    """The pid of this worker's validation process (started if need be)."""
    return int(_executor().submit(os.getpid).result())

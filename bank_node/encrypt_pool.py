"""Worker processes that mask and encrypt a large v2 upload in parallel, one block each.

SEAL's binding holds the GIL while it encodes, encrypts and saves, and the masks are
Python-level work too, so on a node with a second core neither a thread nor the
overlapping of steps helps (``benchmarks/RESULTS.md``). This pool starts its workers
(``bank_node/encrypt_worker.py``) at round start: each loads the members' secret context
from its stdin (a pipe, once per round: never a file, never logged) and computes its
block's masks while the node trains. Once the update is ready, :meth:`EncryptPool.encrypt`
hands each worker its block of values and writes their ciphertexts in chunk order into
one ``CKKSVEC2`` container: the same format, bytes per parameter and SEAL encryption as
``he.seeded.encrypt_vector2``. Anything that goes wrong is a :class:`PoolFailed`; the node
then encrypts in its own process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import tenseal as ts

from bank_node import metrics as node_metrics
from bank_node.encrypt_worker import (
    READY,
    WorkerGone,
    WorkerTask,
    cpu_seconds,
    read_frame,
    split_blocks,
)
from bank_node.encrypt_worker import write_frame as _write_frame
from he.masking import MaskTerm, RoundBinding
from he.params import CkksParams
from he.seeded import seeded_header
from he.wire import HashingWriter
from he.wire2 import write_header

# Below this many values the in-process encryption takes a few tens of milliseconds, less
# than starting a worker costs the node's cores (the demo's 1,987-value update is 1 chunk).
POOL_MIN_VALUES = 1 << 18
# A worker that stops answering without exiting (stopped, swapping, deadlocked in SEAL)
# would hold the upload forever: past this many seconds the workers are killed and the node
# encrypts in its own process. A 1M-value block takes a few seconds on a loaded core.
DEADLINE_BASE_SECONDS = 60.0
DEADLINE_SECONDS_PER_MILLION = 60.0
# The project root, first on the workers' path: they run the node's own code.
_ROOT = str(Path(__file__).resolve().parent.parent)


class PoolFailed(Exception):
    """The workers could not encrypt the update; the node encrypts it itself instead."""


class _Worker:
    """One worker process and the thread that feeds it its task and the secret."""

    def __init__(self, task: WorkerTask, secret: bytes) -> None:
        self.task = task
        path = [_ROOT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bank_node.encrypt_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.error: BaseException | None = None
        # The secret context nearly fills a pipe's buffer and the worker reads it only once
        # its imports are done: a thread writes it so the node goes on meanwhile.
        self._setup = threading.Thread(target=self._send_setup, args=(secret,), daemon=True)
        self._setup.start()

    def _send_setup(self, secret: bytes) -> None:
        try:
            self.send(self.task.to_bytes())
            self.send(secret)
        except (OSError, ValueError) as exc:  # the worker died, or the pool was closed
            self.error = exc  # reported when the node waits for the worker

    def send(self, body: bytes | memoryview) -> None:
        assert self.process.stdin is not None
        _write_frame(self.process.stdin, body)
        self.process.stdin.flush()

    def receive(self) -> bytes:
        assert self.process.stdout is not None
        return read_frame(self.process.stdout)

    def wait_ready(self) -> None:
        self._setup.join()
        if self.error is not None:
            raise WorkerGone(f"the task could not be sent: {self.error}")
        if self.receive() != READY:
            raise WorkerGone("the worker answered something else than READY")

    def kill(self) -> None:
        """Stop the process; its pipes stay open so a reader sees end of stream."""
        if self.process.poll() is None:
            self.process.kill()

    def close(self) -> None:
        self.kill()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        # Reaped on a thread: waiting for the exit here would sit on the upload's path.
        threading.Thread(target=self.process.wait, daemon=True).start()


class EncryptPool:
    """One round's workers for a ``length``-value upload, started at construction."""

    def __init__(
        self,
        number: int,
        params: CkksParams,
        secret: bytes,
        terms: Sequence[MaskTerm],
        binding: RoundBinding,
        length: int,
        workers: int,
        deadline: float | None = None,
    ) -> None:
        self.number, self.length, self.params = number, length, params
        self.deadline = deadline if deadline is not None else default_deadline(length)
        self._watchdog: threading.Timer | None = None
        self._expired = False
        blocks = split_blocks(params, length, workers)
        tasks = [WorkerTask(params, binding, tuple(terms), length, a, b) for a, b in blocks]
        self._workers: list[_Worker] = []
        self._ready = False
        # Each worker's CPU seconds for its block, once encrypted (the benchmark reads them).
        self.worker_cpu: list[float] = []
        try:
            for task in tasks:
                self._workers.append(_Worker(task, secret))
        except OSError as exc:
            self.close()
            raise PoolFailed(f"a worker could not start: {exc}") from exc

    def encrypt(self, values: np.ndarray, fingerprint: str, out: BinaryIO) -> str:
        """Encrypt ``values`` into a seeded v2 container on ``out``; its SHA-256.

        HEError for values that cannot be encrypted at all (NaN, infinity), PoolFailed when
        the workers fail. The pool is closed either way: it serves one upload.
        """
        try:
            values, header = seeded_header(self.params, values, fingerprint)
            if values.size != self.length:
                raise PoolFailed(f"the workers expect {self.length} values, not {values.size}")
            writer = HashingWriter(out)
            write_header(writer, header)
            self.wait_ready()
            self._run(values, writer)
            return writer.hexdigest()
        except (WorkerGone, OSError) as exc:
            raise self._failure("the encryption workers failed", exc) from exc
        finally:
            self.close()

    def wait_ready(self) -> None:
        """Wait until every worker holds its masks (once); PoolFailed if one failed."""
        if self._ready:
            return
        started = time.monotonic()
        self._arm()
        try:
            for worker in self._workers:
                worker.wait_ready()
        except (WorkerGone, OSError) as exc:
            self.close()
            raise self._failure("an encryption worker failed before the update", exc) from exc
        node_metrics.MASK_WAIT_SECONDS.observe(time.monotonic() - started)
        self._ready = True

    def _run(self, values: np.ndarray, writer: HashingWriter) -> None:
        for worker in self._workers:
            # Each worker reads its whole block before it writes a frame, so these writes
            # cannot block on a worker waiting for the node to read its output.
            worker.send(values[worker.task.value_span()].data.cast("B"))
        first, *others = self._workers
        # Every worker's output is read at once (on threads for all but the first), or a
        # full pipe would stall it while the node reads another.
        collected = [_Collector(worker) for worker in others]
        for _ in first.task.block:
            writer.write_chunk(first.receive())
        self.worker_cpu = [cpu_seconds(first.receive())]
        for collector in collected:
            for raw in collector.frames():
                writer.write_chunk(raw)
            self.worker_cpu.append(collector.cpu)

    def _arm(self) -> None:
        """Start the deadline once: from the first wait on the workers to the last frame."""
        if self._watchdog is None:
            self._watchdog = threading.Timer(self.deadline, self._expire)
            self._watchdog.daemon = True
            self._watchdog.start()

    def _expire(self) -> None:
        self._expired = True
        for worker in list(self._workers):
            worker.kill()  # the node's reads then end: WorkerGone, then PoolFailed

    def _failure(self, what: str, exc: BaseException) -> PoolFailed:
        if self._expired:
            return PoolFailed(
                f"the encryption workers did not finish within {self.deadline:.0f} s and "
                "were stopped"
            )
        return PoolFailed(f"{what}: {exc}")

    def close(self) -> None:
        """Stop every worker still running (an unused pool, or one that failed)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        for worker in self._workers:
            worker.close()
        self._workers = []


class _Collector:
    """Reads one worker's ciphertext frames on a thread."""

    def __init__(self, worker: _Worker) -> None:
        self._worker = worker
        self._frames: list[bytes] = []
        self.cpu = 0.0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            self._frames = [self._worker.receive() for _ in self._worker.task.block]
            self.cpu = cpu_seconds(self._worker.receive())
        except (WorkerGone, OSError) as exc:
            self._error = exc

    def frames(self) -> list[bytes]:
        self._thread.join()
        if self._error is not None:
            raise WorkerGone(str(self._error))
        return self._frames


def start_pool(
    number: int,
    params: CkksParams,
    secret: Callable[[], bytes],
    terms: Sequence[MaskTerm],
    binding: RoundBinding,
    length: int,
    workers: int,
) -> EncryptPool | None:
    """A pool for a large enough upload when workers are configured, else None.

    ``secret`` gives the workers' secret context (``worker_secret``), asked only when a
    pool starts.
    """
    if workers < 1 or length < POOL_MIN_VALUES:
        return None
    return EncryptPool(number, params, secret(), terms, binding, length, workers)


def default_deadline(length: int) -> float:
    """Seconds the workers get for a ``length``-value update before they are stopped."""
    return DEADLINE_BASE_SECONDS + DEADLINE_SECONDS_PER_MILLION * length / 1e6


def worker_secret(ctx: ts.Context) -> bytes:
    """The members' secret context as the workers need it: the secret key and parameters.

    The public, relinearisation and Galois keys stay out (symmetric encryption needs
    none), which keeps it to tens of kilobytes.
    """
    if not ctx.is_private():
        raise PoolFailed("the workers need the members' secret context")
    return bytes(
        ctx.serialize(
            save_public_key=False,
            save_secret_key=True,
            save_galois_keys=False,
            save_relin_keys=False,
        )
    )

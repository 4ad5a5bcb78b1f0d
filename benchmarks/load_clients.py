"""The load benchmark's clients: the status poller and the banks' uploaders, each a process.

Both stand for machines other than the portal's. The poller is one bank's node asking for
the round in flight, open loop; the uploaders are the other banks' nodes, all uploading at
the same instant. Each runs in a process of its own, so that neither's share of one
interpreter lock shows up in the other's figures, and the uploaders' process may run
niced (``Uploaders(niceness=19)``): on this one machine that is a model of "the other
banks are elsewhere" (benchmarks/RESULTS.md says which figures used it).
"""

from __future__ import annotations

import http.client
import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bank_node.portal_client import BankClient
from protocol import UpdateReceipt

# One bank's (pre-encrypted) update: its file, digest and signature.
Update = tuple[Path, str, str]


@dataclass(frozen=True)
class UploadResult:
    """One bank's upload as its node saw it (picklable: it crosses from the uploaders)."""

    bank: str
    seconds: float
    accepted: bool
    error: str
    retries: int


# Spawned, never forked: the parent runs threads (the uploaders' executor).
_SPAWN = multiprocessing.get_context("spawn")


class Poller:
    """GET /rounds/current at a fixed rate, open loop (a slow answer does not delay the next).

    Each of its threads keeps one HTTP connection. ``samples`` after ``finish``: (sent at,
    lag behind schedule, latency, status) per request, times from ``time.monotonic``.
    """

    def __init__(self, url: str, credential: str, rate: float, threads: int = 64) -> None:
        self.stop, self.ready = _SPAWN.Event(), _SPAWN.Event()
        self.results: multiprocessing.queues.Queue = _SPAWN.Queue()
        self.process = _SPAWN.Process(
            target=poll, args=(url, credential, rate, threads, self.stop, self.ready, self.results),
            daemon=True,
        )  # fmt: skip
        self.samples: list[tuple[float, float, float, int]] = []
        self.started = self.ended = 0.0

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)

    def start(self) -> None:
        """Start polling; return once the process has started (spawning imports a while)."""
        self.process.start()
        if not self.ready.wait(timeout=120):
            raise RuntimeError("the poller did not start within 120 s")

    def finish(self) -> None:
        self.stop.set()
        self.started, self.ended, self.samples = self.results.get(timeout=120)
        self.process.join(timeout=30)


def poll(
    url: str,
    credential: str,
    rate: float,
    threads: int,
    stop: multiprocessing.synchronize.Event,
    ready: multiprocessing.synchronize.Event,
    results: multiprocessing.queues.Queue,
) -> None:
    """The poller's process: poll until ``stop``, then put (first, last, samples)."""
    host, port = url.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {credential}"}
    local = threading.local()
    samples: list[tuple[float, float, float, int]] = []  # list.append is atomic

    def get() -> int:
        if getattr(local, "conn", None) is None:
            local.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        local.conn.request("GET", "/api/v1/rounds/current", headers=headers)
        response = local.conn.getresponse()
        response.read()
        return response.status

    def one(scheduled: float) -> None:
        started = time.monotonic()
        status = 0
        for _ in range(2):  # a kept-alive connection the server has since closed: reconnect
            try:
                status = get()
                break
            except (OSError, http.client.HTTPException):
                local.conn = None
        samples.append((started, started - scheduled, time.monotonic() - started, status))

    pool = ThreadPoolExecutor(max_workers=threads)
    ready.set()
    interval, next_at = 1.0 / rate, time.monotonic()
    first = next_at
    while not stop.is_set():
        pool.submit(one, next_at)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    last = time.monotonic()
    pool.shutdown(wait=True)
    results.put((first, last, samples))


def upload_all(
    url: str, credentials: dict[str, str], number: int, updates: dict[str, Update]
) -> list[UploadResult]:
    """Every bank's node uploads at the same moment, retrying as a node does (429, 5xx)."""
    barrier = threading.Barrier(len(credentials))

    def one(slug: str) -> UploadResult:
        path, digest, signature = updates[slug]
        client = BankClient(url, credentials[slug], timeout=300)
        barrier.wait()
        started = time.perf_counter()
        try:
            answer = client.upload_update(number, path, digest, signature)
            accepted, error = isinstance(answer, UpdateReceipt), ""
        except Exception as exc:  # every failure is an error to count
            accepted, error = False, str(exc)[:200]
        seconds = time.perf_counter() - started
        return UploadResult(slug, seconds, accepted, error, client.retries_made)

    with ThreadPoolExecutor(max_workers=len(credentials)) as pool:
        return list(pool.map(one, credentials))


class Uploaders:
    """A process (spawned, niced by ``niceness``) in which the banks' nodes upload."""

    def __init__(self, niceness: int) -> None:
        self.niceness = niceness
        self.pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=_SPAWN,
            initializer=os.nice,
            initargs=(niceness,),
        )
        # Started now, not at the first burst: spawning imports the client stack.
        self.pid = self.pool.submit(os.getpid).result()

    def burst(
        self, url: str, credentials: dict[str, str], number: int, updates: dict[str, Update]
    ) -> list[UploadResult]:
        return self.pool.submit(upload_all, url, credentials, number, updates).result()

    def close(self) -> None:
        self.pool.shutdown()

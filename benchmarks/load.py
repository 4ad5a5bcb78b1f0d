"""Load on loopback: many banks uploading large ciphertexts at once, plus status polling.

    bash scripts/with-postgres.sh .venv/bin/python benchmarks/load.py \
        [--banks 50] [--poll-rate 200] [--workers 3] [--threads 8]

Starts the portal (gunicorn + scheduler) on a fresh database next to the one DATABASE_URL
names, onboards ``--banks`` banks through the REST API, and opens a round whose model makes
each encrypted update about 4 MB. Then every bank uploads its (pre-encrypted, signed) update
at the same moment while a poller sends ``GET /api/v1/rounds/current`` at ``--poll-rate``
requests per second, open loop. Prints throughput, p50/p99 latency and errors for both,
the time to aggregate, and each gunicorn worker's peak RSS (VmHWM) after 4 MB uploads and
again after ~30 MB uploads: if uploads stream to disk, the second peak is no higher.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import multiprocessing
import multiprocessing.queues
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bank_node.portal_client import BankClient, OperatorClient  # noqa: E402
from he.codec import encrypt_to_file  # noqa: E402
from he.keys import fingerprint, generate_secret_context, public_context_bytes  # noqa: E402
from he.params import CkksParams  # noqa: E402
from he.signing import public_key_b64, sign, update_message  # noqa: E402
from protocol import RoundInfo, UpdateReceipt  # noqa: E402
from simulation.processes import (  # noqa: E402
    PortalOptions,
    Processes,
    free_port,
    portal_env,
    prepare_database,
    start_portal,
)

# n_features = 44: 44*1024+1024 + 1024*84+84 + 84+1 (+1 count slot) = 132,266 values,
# 65 ciphertexts of 2048 slots: 4.27 MB per update.
MODEL_4MB = {"kind": "mlp", "hidden": [1024, 84], "seed": 1, "loss": "bce"}
# About 975,000 values, 477 ciphertexts: 31 MB per update (for the memory comparison).
MODEL_31MB = {"kind": "mlp", "hidden": [4096, 192], "seed": 1, "loss": "bce"}


def fresh_database(base_url: str) -> str:
    import psycopg2

    name = f"load_{secrets.token_hex(4)}"
    conn = psycopg2.connect(base_url.rsplit("/", 1)[0] + "/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return base_url.rsplit("/", 1)[0] + f"/{name}"


class Portal:
    """gunicorn + scheduler on a fresh database and a temporary blob store."""

    def __init__(self, database_url: str, workers: int, threads: int) -> None:
        self.var = Path(tempfile.mkdtemp(prefix="consortium-load-"))
        # The chart keeps the workers' metric files in memory (an emptyDir of medium
        # Memory); on disk they share the journal with 50 fsynced uploads and stall.
        memory = Path("/dev/shm")
        self.metrics_dir = Path(
            tempfile.mkdtemp(
                prefix="consortium-load-metrics-", dir=memory if memory.is_dir() else None
            )
        )
        self.password = secrets.token_urlsafe(16)
        self.env = portal_env(
            self.var,
            database_url=database_url,
            CONSORTIUM_LOG_LEVEL="WARNING",
            DATABASE_CONN_MAX_AGE="60",
        )
        prepare_database(self.env, self.password)
        extra = ["--backlog", "2048"]
        if threads > 1:
            extra += ["--worker-class", "gthread", "--threads", str(threads)]
        options = PortalOptions(
            workers=workers,
            timeout=300,
            web_extra=tuple(extra),
            multiproc_dir=self.metrics_dir,
            new_session=True,
        )
        self.procs = Processes(stop_timeout=30)
        try:
            running = start_portal(self.procs, self.env, free_port(), options)
        except RuntimeError as exc:
            self.procs.stop_all()
            raise SystemExit(str(exc)) from exc
        self.url, self.web = running.url, running.web

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.web.pid}/task/{self.web.pid}/children").read_text()
        return sorted(int(p) for p in children.split())

    def peak_rss_mb(self) -> dict[int, float]:
        """VmHWM (peak resident set) of every worker, in MB."""
        out = {}
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out[pid] = int(line.split()[1]) / 1024
        return out

    def close(self) -> None:
        self.procs.stop_all()
        shutil.rmtree(self.metrics_dir, ignore_errors=True)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def wait_round(op: OperatorClient, state: str, after: int = 0, timeout: float = 600) -> RoundInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for rnd in op.rounds(limit=5):
            if rnd.number > after and rnd.state == state:
                return rnd
        time.sleep(0.5)
    raise SystemExit(f"no round reached {state!r} in {timeout}s")


def make_updates(secret: Any, fp: str, number: int, length: int, banks: dict, out: Path) -> dict:
    params = CkksParams()
    rng = np.random.default_rng(number)
    updates = {}
    for slug, (_credential, key) in banks.items():
        path = out / f"{slug}-{number}.ckks"
        digest = encrypt_to_file(secret, rng.normal(0, 0.1, length), params, fp, path)
        updates[slug] = (path, digest, sign(key, update_message(number, slug, digest)))
    return updates


class Poller:
    """GET /rounds/current at a fixed rate, open loop (a slow answer does not delay the next).

    It runs in a process of its own, so that the upload threads' share of this process's
    GIL does not show up as poll latency; each of its threads keeps one HTTP connection.
    """

    def __init__(self, url: str, credential: str, rate: float, threads: int = 64) -> None:
        self.args = (url, credential, rate, threads)
        self.stop = multiprocessing.Event()
        self.results: multiprocessing.queues.Queue = multiprocessing.Queue()
        self.process = multiprocessing.Process(target=self._main, daemon=True)
        self.samples: list[tuple[float, float, float, int]] = []

    def start(self) -> None:
        self.process.start()

    def finish(self) -> None:
        self.stop.set()
        self.started, self.ended, self.samples = self.results.get(timeout=120)
        self.process.join(timeout=30)

    def _main(self) -> None:
        url, credential, rate, threads = self.args
        host, port = url.removeprefix("http://").split(":")
        headers = {"Authorization": f"Bearer {credential}"}
        local = threading.local()
        # (sent at, lag behind schedule, latency, status); list.append is atomic.
        samples: list[tuple[float, float, float, int]] = []

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
        interval, next_at = 1.0 / rate, time.monotonic()
        first = next_at
        while not self.stop.is_set():
            pool.submit(one, next_at)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        last = time.monotonic()
        pool.shutdown(wait=True)
        self.results.put((first, last, samples))


def upload_all(
    url: str, banks: dict, number: int, updates: dict
) -> list[tuple[str, float, Any, int]]:
    """Every bank's node uploads at the same moment, retrying as a node does (429, 5xx)."""
    barrier = threading.Barrier(len(banks))

    def one(slug: str) -> tuple[str, float, Any, int]:
        path, digest, signature = updates[slug]
        client = BankClient(url, banks[slug][0], timeout=300)
        barrier.wait()
        started = time.perf_counter()
        try:
            answer: Any = client.upload_update(number, path, digest, signature)
        except Exception as exc:  # every failure is an error to count
            answer = exc
        return slug, time.perf_counter() - started, answer, client.retries_made

    with ThreadPoolExecutor(max_workers=len(banks)) as pool:
        return list(pool.map(one, banks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--banks", type=int, default=50)
    parser.add_argument("--poll-rate", type=float, default=200)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (gthread)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not (os.environ.get("DATABASE_URL") or "").startswith("postgres"):
        raise SystemExit("run under scripts/with-postgres.sh (DATABASE_URL=postgres://...)")

    portal = Portal(fresh_database(os.environ["DATABASE_URL"]), args.workers, args.threads)
    work = Path(tempfile.mkdtemp(prefix="consortium-load-updates-"))
    try:
        results = run(portal, args, work)
    finally:
        portal.close()
        # Hundreds of MB of ciphertexts: keep nothing.
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(portal.var, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def run(portal: Portal, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    params = CkksParams()
    secret = generate_secret_context(params)
    public = public_context_bytes(secret)
    fp = fingerprint(public)
    op = OperatorClient(portal.url, "operator", portal.password)
    op.key_epoch_register(base64.b64encode(public).decode(), params.to_dict())
    banks = {}
    for i in range(args.banks):
        slug = f"bank-{i:02d}"
        key = Ed25519PrivateKey.generate()
        credential = op.bank_create(slug)["credential"]
        BankClient(portal.url, credential).register_signing_key(public_key_b64(key))
        banks[slug] = (credential, key)
    # v1 containers from hand-made banks (no roster): the load on the portal's upload path.
    common = {"min_banks": 3, "max_rounds": 1, "normalize_features": False,
              "ckks_params": params.to_dict(), "secure_aggregation": "v1"}  # fmt: skip
    # Both policies up front, so that importing torch (to size a model) happens before the
    # memory baseline is taken.
    big = op.policy_create(name="load-31mb", active=False, model_spec=MODEL_31MB,
                           deadline_seconds=30, **common)  # fmt: skip
    op.policy_create(name="load-4mb", active=True, model_spec=MODEL_4MB, deadline_seconds=900,
                     **common)  # fmt: skip
    rnd = wait_round(op, "open")
    t0 = time.perf_counter()
    updates = make_updates(secret, fp, rnd.number, rnd.vector_length, banks, work)
    encrypt_s = time.perf_counter() - t0
    size = next(iter(updates.values()))[0].stat().st_size
    baseline = portal.peak_rss_mb()

    poller = Poller(portal.url, next(iter(banks.values()))[0], args.poll_rate)
    poller.start()
    time.sleep(5)  # polling alone first
    t0 = time.monotonic()
    uploads = upload_all(portal.url, banks, rnd.number, updates)
    upload_wall = time.monotonic() - t0
    time.sleep(5)  # and polling alone after
    poller.finish()
    after_4mb = portal.peak_rss_mb()
    published = wait_round(op, "published")

    # The memory comparison: two banks upload ~31 MB each to a round of the bigger model.
    op._json("POST", f"policies/{big['id']}/activate")
    rnd2 = wait_round(op, "open", after=rnd.number)
    two = dict(list(banks.items())[:2])
    big_updates = make_updates(secret, fp, rnd2.number, rnd2.vector_length, two, work)
    big_size = next(iter(big_updates.values()))[0].stat().st_size
    big_uploads = upload_all(portal.url, two, rnd2.number, big_updates)
    after_31mb = portal.peak_rss_mb()

    ok = [u for u in uploads if isinstance(u[2], UpdateReceipt)]
    polls = poller.samples
    poll_ok = [lat for _, _, lat, status in polls if status in (200, 204)]
    duration = poller.ended - poller.started
    burst = (t0, t0 + upload_wall)
    during = [lat for at, _, lat, st in polls if st in (200, 204) and burst[0] <= at <= burst[1]]
    idle = [lat for at, _, lat, st in polls if st in (200, 204) and not burst[0] <= at <= burst[1]]
    return {
        "machine": f"{os.cpu_count()} cores",
        "gunicorn": f"{args.workers} workers x {args.threads} threads",
        "banks": args.banks,
        "update_bytes": size,
        "encrypt_all_seconds": round(encrypt_s, 1),
        "uploads": {
            "accepted": len(ok),
            "errors": len(uploads) - len(ok),
            "busy_answers_retried": sum(u[3] for u in uploads),
            "error_samples": [str(u[2])[:200] for u in uploads if u not in ok][:3],
            "wall_seconds": round(upload_wall, 2),
            "throughput_MB_s": round(len(ok) * size / upload_wall / 1e6, 1),
            "p50_s": round(percentile([u[1] for u in ok], 50), 2),
            "p99_s": round(percentile([u[1] for u in ok], 99), 2),
        },
        "polls": {
            "sent": len(polls),
            "target_rate": args.poll_rate,
            "achieved_rate": round(len(polls) / duration, 1),
            "errors": len(polls) - len(poll_ok),
            "p50_ms": round(percentile(poll_ok, 50) * 1000, 1),
            "p99_ms": round(percentile(poll_ok, 99) * 1000, 1),
            "max_ms": round(max(poll_ok) * 1000, 1) if poll_ok else None,
            "p99_send_lag_ms": round(percentile([lag for _, lag, _, _ in polls], 99) * 1000, 1),
            "idle_p50_ms": round(percentile(idle, 50) * 1000, 1),
            "idle_p99_ms": round(percentile(idle, 99) * 1000, 1),
            "during_uploads_p50_ms": round(percentile(during, 50) * 1000, 1),
            "during_uploads_p99_ms": round(percentile(during, 99) * 1000, 1),
        },
        "aggregation_seconds": _seconds(published.aggregating_at, published.closed_at),
        "published_inputs": len(published.manifest.inputs) if published.manifest else 0,
        "worker_peak_rss_mb": {
            "after_start_and_setup": _rounded(baseline),
            "after_4MB_uploads": _rounded(after_4mb),
            "after_31MB_uploads": _rounded(after_31mb),
            "big_update_bytes": big_size,
            "big_uploads_accepted": sum(isinstance(u[2], UpdateReceipt) for u in big_uploads),
        },
    }


def _rounded(rss: dict[int, float]) -> list[float]:
    return [round(v, 1) for _, v in sorted(rss.items())]


def _seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return float("nan")
    return round((end - start).total_seconds(), 2)


if __name__ == "__main__":
    main()

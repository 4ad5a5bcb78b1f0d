"""Load on loopback: many banks uploading large ciphertexts at once, plus status polling.

    bash scripts/with-postgres.sh .venv/bin/python benchmarks/load.py \
        [--banks 50] [--poll-rate 200] [--layouts one,split] [--client-niceness 0,19] \
        [--repeats 1] [--workers 3] [--threads 8] [--read-workers 2] [--upload-niceness 10|idle]

Starts the portal on a fresh database next to the one DATABASE_URL names: the scheduler
and the gunicorn pools the layouts need (``load_pools.py``: ``one`` pool for everything,
or ``split``, reads and a niced uploads pool, as the chart's ``uploads`` Deployment and
Ingress deploy it). It onboards ``--banks`` banks through the REST API and opens rounds
whose model makes each encrypted update about 4 MB. Then, once per layout and uploaders'
niceness, taking turns (``--repeats`` times), every bank uploads its (pre-encrypted,
signed) update at the same moment while a poller sends ``GET /api/v1/rounds/current`` at
``--poll-rate`` requests per second, open loop (``load_clients.py``). Prints, per burst,
throughput, p50/p99 latency and errors for both, the poller's own send lag and the load
average; then the time to aggregate, and the one-pool workers' peak RSS (VmHWM) after 4 MB
uploads and again after ~30 MB uploads: if uploads stream to disk, the second peak is no
higher.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Its two helper modules sit beside it (imported by name here and in the spawned clients).
sys.path.insert(0, str(ROOT / "benchmarks"))

from load_clients import Poller, Uploaders, UploadResult  # noqa: E402
from load_pools import LAYOUTS, Pool, PoolSpec, Portal, tree_cpu_seconds  # noqa: E402

from bank_node.portal_client import BankClient, OperatorClient  # noqa: E402
from he.codec import encrypt_to_file  # noqa: E402
from he.keys import fingerprint, generate_secret_context, public_context_bytes  # noqa: E402
from he.params import CkksParams  # noqa: E402
from he.signing import public_key_b64, sign, update_message  # noqa: E402
from protocol import RoundInfo  # noqa: E402

# n_features = 44: 44*1024+1024 + 1024*84+84 + 84+1 (+1 count slot) = 132,266 values,
# 65 ciphertexts of 2048 slots: 4.27 MB per update.
MODEL_4MB = {"kind": "mlp", "hidden": [1024, 84], "seed": 1, "loss": "bce"}
# About 975,000 values, 477 ciphertexts: 31 MB per update (for the memory comparison).
MODEL_31MB = {"kind": "mlp", "hidden": [4096, 192], "seed": 1, "loss": "bce"}
# Seconds of polling alone before and after each upload burst.
QUIET_SECONDS = 5


def fresh_database(base_url: str) -> str:
    import psycopg2

    name = f"load_{secrets.token_hex(4)}"
    conn = psycopg2.connect(base_url.rsplit("/", 1)[0] + "/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return base_url.rsplit("/", 1)[0] + f"/{name}"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def wait_round(op: OperatorClient, state: str, number: int, timeout: float = 600) -> RoundInfo:
    """Round ``number`` once it is in ``state``; 0 means any round in it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for rnd in op.rounds(limit=5):
            if number in (0, rnd.number) and rnd.state == state:
                return rnd
        time.sleep(0.5)
    raise SystemExit(f"round {number or 'any'} did not reach {state!r} in {timeout}s")


def make_updates(secret: Any, fp: str, number: int, length: int, banks: dict, out: Path) -> dict:
    params = CkksParams()
    rng = np.random.default_rng(number)
    updates = {}
    for slug, (_credential, key) in banks.items():
        path = out / f"{slug}-{number}.ckks"
        digest = encrypt_to_file(secret, rng.normal(0, 0.1, length), params, fp, path)
        updates[slug] = (path, digest, sign(key, update_message(number, slug, digest)))
    return updates


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--banks", type=int, default=50)
    parser.add_argument("--poll-rate", type=float, default=200)
    parser.add_argument("--layouts", default="one,split", help="comma-separated: one, split")
    parser.add_argument(
        "--client-niceness", default="0", help="comma-separated niceness of the uploaders' process"
    )
    parser.add_argument("--repeats", type=int, default=1, help="bursts per layout and niceness")
    parser.add_argument(
        "--workers", type=int, default=3, help="workers of the one pool and of the uploads pool"
    )
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (gthread)")
    parser.add_argument("--read-workers", type=int, default=2, help="workers of the reads pool")
    parser.add_argument(
        "--upload-niceness", default="10", help="of the uploads pool: 0-19, or idle (SCHED_IDLE)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.layouts = tuple(args.layouts.split(","))
    args.client_niceness = tuple(int(n) for n in args.client_niceness.split(","))
    if not set(args.layouts) <= set(LAYOUTS):
        parser.error(f"--layouts takes {', '.join(LAYOUTS)}, not {','.join(args.layouts)}")
    if not all(0 <= n <= 19 for n in args.client_niceness):
        parser.error("--client-niceness takes numbers 0-19")
    if args.upload_niceness != "idle":
        if not (args.upload_niceness.isdigit() and 0 <= int(args.upload_niceness) <= 19):
            parser.error("--upload-niceness takes a number 0-19 or idle")
        args.upload_niceness = int(args.upload_niceness)
    return args


def main() -> None:
    args = parse_args()
    if not (os.environ.get("DATABASE_URL") or "").startswith("postgres"):
        raise SystemExit("run under scripts/with-postgres.sh (DATABASE_URL=postgres://...)")
    one = PoolSpec(args.workers, args.threads)
    split = (
        PoolSpec(args.read_workers, args.threads),
        PoolSpec(args.workers, args.threads, args.upload_niceness),
    )
    portal = Portal(fresh_database(os.environ["DATABASE_URL"]), args.layouts, one, split)
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


def onboard(op: OperatorClient, url: str, count: int) -> dict[str, tuple[str, Any]]:
    """``count`` banks, each with its credential and registered signing key."""
    banks = {}
    for i in range(count):
        slug = f"bank-{i:02d}"
        key = Ed25519PrivateKey.generate()
        credential = op.bank_create(slug)["credential"]
        BankClient(url, credential).register_signing_key(public_key_b64(key))
        banks[slug] = (credential, key)
    return banks


def run(portal: Portal, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    params = CkksParams()
    secret = generate_secret_context(params)
    public = public_context_bytes(secret)
    fp = fingerprint(public)
    op = OperatorClient(portal.url, "operator", portal.password)
    op.key_epoch_register(base64.b64encode(public).decode(), params.to_dict())
    banks = onboard(op, portal.url, args.banks)
    turns = [
        (layout, nice)
        for _, nice, layout in itertools.product(
            range(args.repeats), args.client_niceness, args.layouts
        )
    ]
    # v1 containers from hand-made banks (no roster): the load on the portal's upload path.
    common = {"min_banks": 3, "normalize_features": False,
              "ckks_params": params.to_dict(), "secure_aggregation": "v1"}  # fmt: skip
    # Both policies up front, so that importing torch (to size a model) happens before the
    # memory baseline is taken. One round of the 4 MB model per burst.
    big = op.policy_create(name="load-31mb", active=False, model_spec=MODEL_31MB,
                           deadline_seconds=30, max_rounds=1, **common)  # fmt: skip
    op.policy_create(name="load-4mb", active=True, model_spec=MODEL_4MB, deadline_seconds=900,
                     max_rounds=len(turns), **common)  # fmt: skip
    one = portal.pools["all"]
    baseline = one.peak_rss_mb()
    uploaders = {nice: Uploaders(nice) for nice in args.client_niceness}
    bursts, last = [], None
    try:
        for layout, nice in turns:
            rnd = wait_round(op, "open", 0 if last is None else last.number + 1)
            updates = make_updates(secret, fp, rnd.number, rnd.vector_length, banks, work)
            figures = burst(portal, layout, uploaders[nice], banks, rnd, updates, args.poll_rate)
            last = wait_round(op, "published", rnd.number)
            figures["aggregation_seconds"] = _seconds(last.aggregating_at, last.closed_at)
            figures["published_inputs"] = len(last.manifest.inputs) if last.manifest else 0
            bursts.append(figures)
            print(json.dumps(figures), flush=True)
            for path, _, _ in updates.values():
                path.unlink()
        after_4mb = one.peak_rss_mb()
        first = uploaders[args.client_niceness[0]]
        memory = memory_comparison(op, one, big, banks, secret, fp, work, first)
    finally:
        for each in uploaders.values():
            each.close()
    return {
        "machine": f"{os.cpu_count()} cores",
        "pools": {name: pool.spec.describe() for name, pool in portal.pools.items()},
        "banks": args.banks,
        "update_bytes": bursts[0]["update_bytes"] if bursts else 0,
        "bursts": bursts,
        "summary": summary(bursts),
        "one_pool_worker_peak_rss_mb": {
            "after_start_and_setup": _rounded(baseline),
            "after_4MB_uploads": _rounded(after_4mb),
            **memory,
        },
    }


def burst(
    portal: Portal,
    layout: str,
    uploaders: Uploaders,
    banks: dict[str, tuple[str, Any]],
    rnd: RoundInfo,
    updates: dict,
    rate: float,
) -> dict[str, Any]:
    """Poll alone, then every bank uploads at once, then poll alone again: the figures."""
    reads, uploads = portal.routes(layout)
    credentials = {slug: credential for slug, (credential, _) in banks.items()}
    poller = Poller(reads.url, next(iter(credentials.values())), rate)
    poller.start()
    time.sleep(QUIET_SECONDS)
    parts = {"poll_pool": reads.proc.pid, "upload_pool": uploads.proc.pid,
             "uploaders": uploaders.pid, "poller": poller.pid}  # fmt: skip
    cpu_before = {name: tree_cpu_seconds(pid) for name, pid in parts.items()}
    load_before, busy_before = os.getloadavg()[0], cpu_jiffies()
    t0 = time.monotonic()
    results = uploaders.burst(uploads.url, credentials, rnd.number, updates)
    window = (t0, time.monotonic())
    load_after, busy_after = os.getloadavg()[0], cpu_jiffies()
    cpu = {name: round(tree_cpu_seconds(pid) - cpu_before[name], 2) for name, pid in parts.items()}
    time.sleep(QUIET_SECONDS)
    poller.finish()
    busy = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
    size = next(iter(updates.values()))[0].stat().st_size
    return {
        "round": rnd.number,
        "layout": layout,
        "poll_pool": reads.spec.describe(),
        "upload_pool": uploads.spec.describe(),
        "uploaders_niceness": uploaders.niceness,
        "update_bytes": size,
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],
        "cpu_busy_percent_during_uploads": round(100 * busy, 1),
        # CPU seconds each part used during the burst (one pool: both pool figures are it).
        "cpu_seconds_during_uploads": cpu,
        "uploads": upload_figures(results, window, size),
        "polls": poll_figures(poller, window, rate),
    }


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def upload_figures(
    results: list[UploadResult], window: tuple[float, float], size: int
) -> dict[str, Any]:
    ok = [u for u in results if u.accepted]
    wall = window[1] - window[0]
    return {
        "accepted": len(ok),
        "errors": len(results) - len(ok),
        "busy_answers_retried": sum(u.retries for u in results),
        "error_samples": [u.error for u in results if not u.accepted][:3],
        "wall_seconds": round(wall, 2),
        "throughput_MB_s": round(len(ok) * size / wall / 1e6, 1),
        "p50_s": round(percentile([u.seconds for u in ok], 50), 2),
        "p99_s": round(percentile([u.seconds for u in ok], 99), 2),
    }


def poll_figures(poller: Poller, window: tuple[float, float], rate: float) -> dict[str, Any]:
    polls = poller.samples
    good = [(at, lag, lat) for at, lag, lat, status in polls if status in (200, 204)]
    during = [s for s in good if window[0] <= s[0] <= window[1]]
    idle = [s for s in good if not window[0] <= s[0] <= window[1]]

    def ms(samples: list[tuple[float, float, float]], q: float, index: int = 2) -> float:
        return round(percentile([s[index] for s in samples], q) * 1000, 1)

    return {
        "sent": len(polls),
        "target_rate": rate,
        "achieved_rate": round(len(polls) / (poller.ended - poller.started), 1),
        "errors": len(polls) - len(good),
        "idle_p50_ms": ms(idle, 50),
        "idle_p99_ms": ms(idle, 99),
        "during_uploads_p50_ms": ms(during, 50),
        "during_uploads_p99_ms": ms(during, 99),
        "during_uploads_max_ms": ms(during, 100),
        "p99_send_lag_ms": ms(good, 99, index=1),
        "during_uploads_p99_send_lag_ms": ms(during, 99, index=1),
    }


def summary(bursts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per layout and uploaders' niceness: the median over repeats of the key figures."""
    rows = []
    keys = sorted({(b["layout"], b["uploaders_niceness"]) for b in bursts})
    for layout, nice in keys:
        mine = [b for b in bursts if (b["layout"], b["uploaders_niceness"]) == (layout, nice)]

        def median(part: str, key: str, runs: list[dict[str, Any]] = mine) -> float:
            return round(float(np.median([b[part][key] for b in runs])), 1)

        rows.append(
            {
                "layout": layout,
                "uploaders_niceness": nice,
                "bursts": len(mine),
                "accepted": sum(b["uploads"]["accepted"] for b in mine),
                "errors": sum(b["uploads"]["errors"] for b in mine),
                "median_poll_during_uploads_p99_ms": median("polls", "during_uploads_p99_ms"),
                "median_poll_during_uploads_p50_ms": median("polls", "during_uploads_p50_ms"),
                "median_poll_idle_p99_ms": median("polls", "idle_p99_ms"),
                "median_upload_wall_seconds": median("uploads", "wall_seconds"),
            }
        )
    return rows


def memory_comparison(
    op: OperatorClient,
    pool: Pool,
    big: dict[str, Any],
    banks: dict[str, tuple[str, Any]],
    secret: Any,
    fp: str,
    work: Path,
    uploaders: Uploaders,
) -> dict[str, Any]:
    """Two banks upload ~31 MB each to the one pool: its workers' peak RSS after."""
    op._json("POST", f"policies/{big['id']}/activate")
    rnd = wait_round(op, "open", 0)
    two = dict(list(banks.items())[:2])
    updates = make_updates(secret, fp, rnd.number, rnd.vector_length, two, work)
    credentials = {slug: credential for slug, (credential, _) in two.items()}
    results = uploaders.burst(pool.url, credentials, rnd.number, updates)
    return {
        "after_31MB_uploads": _rounded(pool.peak_rss_mb()),
        "big_update_bytes": next(iter(updates.values()))[0].stat().st_size,
        "big_uploads_accepted": sum(u.accepted for u in results),
    }


def _rounded(rss: dict[int, float]) -> list[float]:
    return [round(v, 1) for _, v in sorted(rss.items())]


def _seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return float("nan")
    return round((end - start).total_seconds(), 2)


if __name__ == "__main__":
    main()

"""``round_share.py``'s timing of v2 encryption by the node's worker processes.

The workers (``bank_node.encrypt_pool``) start and compute their masks before the clocks
start, as a node's do while it trains; T_enc (workers) is the encryption once the update
is ready, on the wall clock and as the critical path's CPU (the node's own CPU plus the
slowest worker's), beside the CPU every process spent.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from round_share_common import (
    CLOCKS,
    FIRST_TRAINING_ROUND,
    TARGET_PARAMS,
    TARGET_SHARE,
    Clock,
    Crypto,
    Timing,
    encryption_share,
    median_timing,
    update_values,
)

from bank_node.encrypt_pool import POOL_MIN_VALUES, EncryptPool, worker_secret
from bank_node.training import LocalData, train_round
from protocol import PolicySnapshot


@dataclass(frozen=True)
class WorkerResult:
    """The v2 encryption of one update size by worker processes, beside the training time.

    ``t_enc.cpu`` is the critical path (the node's CPU plus the slowest worker's),
    ``cpu_total`` what every process spent.
    """

    label: str
    values: int
    t_train: Timing
    t_enc: Timing
    cpu_total: float

    def share(self, clock: Clock) -> float:
        return encryption_share(self.t_enc.on(clock), self.t_train.on(clock))


def time_encrypt_workers(
    crypto: Crypto, values: np.ndarray, path: Path, repeats: int, workers: int
) -> tuple[Timing, float]:
    """T_enc (workers) and the CPU of every process, medians; each run starts a fresh pool.

    The workers' start-up and masks are waited for before the clocks start: the node
    starts them with the round and they run while it trains (``training_beside_workers``).
    """
    secret = worker_secret(crypto.secret)
    walls, critical, totals = [], [], []
    for _ in range(repeats):
        pool = _pool(crypto, secret, values.size, workers)
        pool.wait_ready()
        wall, cpu = time.perf_counter(), time.process_time()
        with open(path, "wb") as out:
            pool.encrypt(values, crypto.fingerprint, out)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        walls.append(wall)
        critical.append(cpu + max(pool.worker_cpu))
        totals.append(cpu + sum(pool.worker_cpu))
    median = statistics.median
    return Timing(median(walls), median(critical)), median(totals)


def measure_workers(
    crypto: Crypto, t_train: Timing, sizes: Sequence[tuple[str, int]], repeats: int, workers: int
) -> list[WorkerResult]:
    """The workers' encryption of each size the node gives them (at least POOL_MIN_VALUES)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="round-share-") as tmp:
        for label, length in sizes:
            if length >= POOL_MIN_VALUES:
                values, path = update_values(length), Path(tmp) / "update.ckks2"
                t_enc, total = time_encrypt_workers(crypto, values, path, repeats, workers)
                results.append(WorkerResult(label, length, t_train, t_enc, total))
    return results


def worker_lines(results: Sequence[WorkerResult], workers: int) -> list[str]:
    """The workers' table (both clocks in one row) and the target's verdict on each clock."""
    lines = [
        "",
        f"v2 by {workers} encryption worker processes (bank_node.encrypt_pool), masks ready; "
        "cpu = the node's + the slowest worker's",
        f"  {'update':<24} {'values':>10} {'T_train cpu':>11} {'T_enc cpu':>9} "
        f"{'all CPU':>8} {'share cpu':>9} {'T_train wall':>12} {'T_enc wall':>10} "
        f"{'share wall':>10}",
    ]
    for r in results:
        lines.append(
            f"  {r.label:<24} {r.values:>10,} {r.t_train.cpu:>10.3f}s {r.t_enc.cpu:>8.3f}s "
            f"{r.cpu_total:>7.3f}s {r.share('cpu'):>9.2%} {r.t_train.wall:>11.3f}s "
            f"{r.t_enc.wall:>9.3f}s {r.share('wall'):>10.2%}"
        )
    for r in results:
        if r.values == TARGET_PARAMS:
            for clock in CLOCKS:
                met = "met" if r.share(clock) <= TARGET_SHARE else "MISSED"
                lines.append(
                    f"  target ({clock}): share v2 <= {TARGET_SHARE:.0%} at {TARGET_PARAMS:,} "
                    f"values: {workers} workers {r.share(clock):.2%} ({met})"
                )
    return lines


def time_training_beside_workers(
    data: LocalData, policy: PolicySnapshot, crypto: Crypto, length: int, repeats: int, workers: int
) -> Timing:
    """T_train while the workers start and compute their masks, until they are ready.

    As the node runs them: started with the round, waited for once training ends, so
    start-up outlasting training is counted. CPU: this process only.
    """
    secret = worker_secret(crypto.secret)

    def train_beside_workers() -> None:
        pool = _pool(crypto, secret, length, workers)
        train_round(data, policy, None, seed=FIRST_TRAINING_ROUND)
        pool.wait_ready()
        pool.close()

    return median_timing(train_beside_workers, repeats)


def workers_overlap_line(alone: Timing, beside: Timing, length: int, workers: int) -> str:
    """How much starting the workers (and their masks) lengthens training, until ready."""
    longer = beside.wall / alone.wall - 1 if alone.wall > 0 else float("nan")
    return (
        f"training while {workers} workers start and compute the masks of {length:,} values, "
        f"until they are ready: {beside.wall:.3f}s wall against {alone.wall:.3f}s alone "
        f"({longer:+.1%}); CPU of this process {beside.cpu:.3f}s"
    )


def _pool(crypto: Crypto, secret: bytes, length: int, workers: int) -> EncryptPool:
    """Workers for the benchmark's first training round, as a node starts them."""
    return EncryptPool(
        FIRST_TRAINING_ROUND, crypto.params, secret, crypto.terms, crypto.binding, length, workers
    )

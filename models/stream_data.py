"""Training rows streamed from Parquet feature files, in memory bounded by a buffer, not the data.

`StreamDataset` reads the files' record batches (``pyarrow``), keeps the rows of the training
period (``tick`` below a bound), fills a buffer of ``buffer_rows`` rows, shuffles it (or not),
normalises it and cuts it into batches of ``batch_size`` rows; the rows left over (fewer than
a batch) wait for the next buffer, so without shuffling the batches are exactly the in-memory
loader's batches over the same rows in the same order. Memory: the buffer plus one record
batch, whatever the number of rows.

**The effect of a bounded buffer.** An in-memory loader permutes all rows each epoch; here a
row only meets the rows of its own buffer (``buffer_rows`` consecutive rows of the files, with
the files' order permuted each epoch when shuffling). Files partitioned by day hold about one
day each, so a small buffer gives batches from a few days at a time: the gradient steps are
more correlated than under a full shuffle and the epoch ends on whichever days came last. A
buffer of several days' rows makes that small; a buffer covering every row is a full shuffle.

**Sharding.** Every process (distributed rank, and DataLoader worker within it) reads the same
stream with the same seed, so every one cuts the same global batches; rank ``r`` of ``R``
keeps the ``r``-th of ``R`` slices of each global batch, and worker ``w`` of ``W`` keeps every
``W``-th global batch. The ranks together see each global batch once, every rank takes the
same number of steps (a batch too small to give every rank a row is dropped), and the
averaged gradient of a step is that of the one-process batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

LABEL = "label"
TICK = "tick"  # the timestamp in nanoseconds, as bank_node.staging writes it
READ_ROWS = 65_536


@dataclass(frozen=True, eq=False)
class StreamSpec:
    """What a stream reads and how: the files, its feature columns, and its batching.

    ``before_tick``: keep only rows whose ``tick`` is below it (the training period);
    ``mean``/``std``: the normalisation applied to each buffer, as ``Normalizer.apply``;
    ``batch_size``: rows per optimiser step, over all ranks together.
    """

    files: tuple[Path, ...]
    columns: tuple[str, ...]
    batch_size: int = 256
    buffer_rows: int = 262_144
    shuffle: bool = True
    seed: int = 0
    before_tick: int | None = None
    mean: np.ndarray | None = field(default=None, repr=False)
    std: np.ndarray | None = field(default=None, repr=False)
    read_rows: int = READ_ROWS

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.buffer_rows < 1 or self.read_rows < 1:
            raise ValueError("batch_size, buffer_rows and read_rows must be positive")
        if not self.files:
            raise ValueError("a stream needs at least one Parquet file")
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std, or neither")


def parquet_files(directory: Path) -> tuple[Path, ...]:
    """The Parquet files under ``directory`` (or the file itself), in path order.

    Paths of a ``day=YYYY-MM-DD/`` partitioning sort in time order.
    """
    if directory.is_file():
        return (directory,)
    return tuple(sorted(directory.rglob("*.parquet")))


def _read(path: Path, spec: StreamSpec) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One file's rows of the training period as (float32 features, float32 labels)."""
    columns = [*spec.columns, LABEL, *([TICK] if spec.before_tick is not None else [])]
    for batch in pq.ParquetFile(path).iter_batches(batch_size=spec.read_rows, columns=columns):
        if spec.before_tick is not None:
            batch = batch.filter(pc.less(batch.column(TICK), pa.scalar(spec.before_tick)))
        if batch.num_rows == 0:
            continue
        labels = batch.column(LABEL)
        if labels.null_count:
            raise ValueError(f"{path}: {labels.null_count} row(s) without a label; cannot train")
        x = np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in spec.columns])
        yield x.astype(np.float32, copy=False), labels.to_numpy().astype(np.float32)


def raw_rows(
    spec: StreamSpec, order: Sequence[Path] | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every training-period row of the files, unshuffled and unnormalised, batch by batch."""
    for path in spec.files if order is None else order:
        yield from _read(path, spec)


def count_rows(spec: StreamSpec) -> int:
    """The rows a stream trains on: from the files' metadata, or one pass over ``tick``."""
    if spec.before_tick is None:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in spec.files)
    total = 0
    for path in spec.files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=spec.read_rows, columns=[TICK]):
            total += int(
                pc.sum(pc.less(batch.column(TICK), pa.scalar(spec.before_tick))).as_py() or 0
            )
    return total


def stream_moments(spec: StreamSpec) -> tuple[np.ndarray, int]:
    """Per-feature ``[E[x], E[x^2]]`` of the stream's rows and their count, in one pass.

    Float64 sums of each record batch (the in-memory ``x.astype(float64).mean(axis=0)``
    up to summation order: within 1e-12 relative on millions of rows).
    """
    n_features = len(spec.columns)
    sums, squares, rows = np.zeros(n_features), np.zeros(n_features), 0
    for x, _ in raw_rows(spec):
        wide = x.astype(np.float64)
        sums += wide.sum(axis=0)
        squares += (wide * wide).sum(axis=0)
        rows += len(wide)
    if rows == 0:
        return np.full(2 * n_features, np.nan), 0
    return np.concatenate([sums / rows, squares / rows]), rows


def _normalise(x: np.ndarray, spec: StreamSpec) -> np.ndarray:
    if spec.mean is None or spec.std is None:
        return x
    return ((x - spec.mean) / spec.std).astype(np.float32)


def global_batches(
    spec: StreamSpec, rng: np.random.Generator | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The stream's batches of ``spec.batch_size`` rows (the last may be short), normalised.

    ``rng``: shuffle the files' order and each buffer with it; None keeps the files' order.
    """
    order = list(spec.files)
    if rng is not None:
        order = [order[i] for i in rng.permutation(len(order))]
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    held = 0
    for x, y in raw_rows(spec, order):
        xs.append(x)
        ys.append(y)
        held += len(x)
        if held >= spec.buffer_rows:
            buffer_x, buffer_y = _buffer(xs, ys, rng)
            full = len(buffer_x) - len(buffer_x) % spec.batch_size
            yield from _cut(buffer_x[:full], buffer_y[:full], spec)
            # The rows short of a batch wait for the next buffer, in their order.
            xs, ys, held = [buffer_x[full:]], [buffer_y[full:]], len(buffer_x) - full
    if held:
        yield from _cut(*_buffer(xs, ys, rng), spec)


def _buffer(
    xs: list[np.ndarray], ys: list[np.ndarray], rng: np.random.Generator | None
) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.concatenate(xs), np.concatenate(ys)
    if rng is None:
        return x, y
    order = rng.permutation(len(x))
    return x[order], y[order]


def _cut(x: np.ndarray, y: np.ndarray, spec: StreamSpec) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, len(x), spec.batch_size):
        stop = start + spec.batch_size
        yield _normalise(x[start:stop], spec), y[start:stop]


def shard_position() -> tuple[int, int, int, int]:
    """(rank, ranks, worker, workers) of the calling process: distributed and DataLoader."""
    rank, ranks = 0, 1
    if dist.is_available() and dist.is_initialized():
        rank, ranks = dist.get_rank(), dist.get_world_size()
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank, ranks, worker, workers


class StreamDataset(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    """The stream as (features, labels) tensors, this process's shard (see the module doc).

    Each ``iter()`` is one epoch; epoch ``e`` shuffles with the seed ``(seed, e)``, the same
    in every process so that all cut the same global batches.
    """

    def __init__(self, spec: StreamSpec) -> None:
        super().__init__()
        self.spec = spec
        self.epoch = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rank, ranks, worker, workers = shard_position()
        rng = np.random.default_rng([self.spec.seed, self.epoch]) if self.spec.shuffle else None
        self.epoch += 1
        for index, (x, y) in enumerate(global_batches(self.spec, rng)):
            if index % workers != worker or len(x) < ranks:
                continue
            part_x, part_y = np.array_split(x, ranks)[rank], np.array_split(y, ranks)[rank]
            yield torch.from_numpy(np.ascontiguousarray(part_x)), torch.from_numpy(part_y)

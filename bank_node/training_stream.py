"""Streamed local work (``[training] data = "stream"``): Parquet features, moments, a round.

The bank's file is featurised into Parquet partitioned by day by the engine of
``[training] engine`` (`bank_node.feature_engines`: DuckDB or numpy, within
``memory_limit``), once per file; the training period
is the in-memory split's (`bank_node.splits`: the first 60% of the time span, or before
``[evaluation] train_before`` less its validation share), as a bound on each row's
timestamp; the statistics round's moments and the round's training read those rows batch by
batch (`models.stream_data`), so memory does not grow with the number of rows.
"""

from __future__ import annotations

import functools
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bank_node.checks import Refused
from bank_node.config import Evaluation, NodeConfig
from bank_node.config_training import TrainingConfig
from bank_node.feature_engines import features_by_date
from bank_node.features_duckdb import EngineSettings
from bank_node.splits import DEFAULT_FRACTIONS
from bank_node.training import Normalizer, _local_fit, _round_start
from models.features import FEATURE_NAMES
from models.stream_data import TICK, StreamSpec, parquet_files, stream_moments
from models.training import TrainerSettings, train_stream
from models.vector import model_to_vector
from protocol import DEFAULT_FEATURE_SET, PolicySnapshot

_NS_PER_US = 1000


@dataclass(frozen=True)
class StreamedData:
    """The bank's features as Parquet files, and the end (exclusive, ns) of its training period."""

    files: tuple[Path, ...]
    before_tick: int

    def spec(self, training: TrainingConfig, **options: object) -> StreamSpec:
        """The training period's stream, batched and buffered as ``training`` says."""
        return StreamSpec(
            self.files,
            tuple(FEATURE_NAMES),
            buffer_rows=training.buffer_rows,
            before_tick=self.before_tick,
            **options,  # type: ignore[arg-type]
        )


def streamed_data(config: NodeConfig) -> StreamedData:
    """The node's data file featurised to Parquet (once per file and settings), with its split."""
    stat = config.data_file.stat()
    training = config.training
    return _streamed(config.data_file, stat.st_mtime_ns, config.evaluation, _work_dir(config),
                     (training.engine, training.memory_limit))  # fmt: skip


def _work_dir(config: NodeConfig) -> Path:
    return config.training.work_dir or config.state_dir / "train-work"


@functools.lru_cache(maxsize=2)
def _streamed(
    source: Path, mtime_ns: int, evaluation: Evaluation, work: Path, engine: tuple[str, str]
) -> StreamedData:
    """``engine``: the feature engine's name and its memory limit."""
    # A previous run's features would be mixed with these (DuckDB's COPY adds files).
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    name, memory_limit = engine
    settings = EngineSettings(memory_limit=memory_limit, temp_directory=work / "spill")
    files = parquet_files(features_by_date(name, source, work, settings))
    (work / "staged.parquet").unlink(missing_ok=True)  # the features carry all we need
    return StreamedData(files, training_end(files, evaluation))


def training_end(files: tuple[Path, ...], evaluation: Evaluation) -> int:
    """The first timestamp (ns) after the training period, as `bank_node.splits` cuts it.

    The in-memory split keeps the rows whose microsecond timestamp lies below
    ``first + (last - first) * cut``; with whole microseconds that is ``tick`` below the
    edge rounded up, in nanoseconds.
    """
    before = None if evaluation.train_before is None else _day_ns(evaluation.train_before)
    first, last = _tick_range(files, before)
    cut = DEFAULT_FRACTIONS[0] if before is None else 1 - evaluation.validation_fraction
    lo, hi = np.int64(first // _NS_PER_US), np.int64(last // _NS_PER_US)
    edge = lo + (hi - lo) * np.float64(cut)
    return int(np.ceil(edge)) * _NS_PER_US


def _day_ns(day: date) -> int:
    return int(np.datetime64(day.isoformat(), "ns").astype(np.int64))


def _tick_range(files: tuple[Path, ...], before: int | None) -> tuple[int, int]:
    """The first and last ``tick`` of the rows (below ``before`` when given), in one pass."""
    lows, highs = [], []
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(columns=[TICK]):
            ticks = batch.column(TICK)
            if before is not None:
                ticks = ticks.filter(pc.less(ticks, before))
            if len(ticks):
                bounds = pc.min_max(ticks)
                lows.append(bounds["min"].as_py())
                highs.append(bounds["max"].as_py())
    if not lows:
        raise Refused("no_training_rows", f"no training rows in the features of {files[:1]}")
    return min(lows), max(highs)


def streamed_moments(data: StreamedData, training: TrainingConfig) -> tuple[np.ndarray, int]:
    """The statistics round's ``[E[x], E[x^2]]`` of the training period, in one pass."""
    return stream_moments(data.spec(training, shuffle=False))


def check_streamable(policy: PolicySnapshot) -> None:
    """The streamed features are the account-history set alone; ``Refused`` otherwise."""
    if policy.feature_set != DEFAULT_FEATURE_SET or policy.counterparty_sketch is not None:
        sketch = " with cross-bank sketch features" if policy.counterparty_sketch else ""
        raise Refused(
            "stream_unsupported",
            f"policy {policy.name!r} v{policy.version} reads feature set "
            f"{policy.feature_set!r}{sketch}; streamed training computes "
            f'{DEFAULT_FEATURE_SET!r} only: set [training] data = "memory" to take part',
        )


def node_moments(config: NodeConfig) -> tuple[np.ndarray, int]:
    """The statistics round's moments of the node's own data, streamed."""
    return streamed_moments(streamed_data(config), config.training)


def node_train_round(
    config: NodeConfig,
    policy: PolicySnapshot,
    base: np.ndarray | None,
    seed: int,
    norm: Normalizer | None,
) -> tuple[np.ndarray, int]:
    """A training round on the node's own data, streamed; (weights, sample count)."""
    return train_round_stream(streamed_data(config), config.training, policy, base, seed, norm)


def train_round_stream(
    data: StreamedData,
    training: TrainingConfig,
    policy: PolicySnapshot,
    base: np.ndarray | None,
    seed: int,
    norm: Normalizer | None,
) -> tuple[np.ndarray, int]:
    """`bank_node.training.train_round` on the streamed rows; (weights, sample count).

    The policy's ``batch_size`` is the rows of one optimiser step over all training
    processes together, so the devices change the speed, not the model (within rounding).
    """
    if policy.dp_enabled:
        raise Refused(
            "dp_needs_memory",
            'DP-SGD samples from rows held in memory; set [training] data = "memory" to take '
            "part in a round under a DP policy",
        )
    fit = _local_fit(policy)
    scale = {"mean": norm.mean, "std": norm.std} if norm is not None else {}
    spec = data.spec(training, batch_size=fit["batch_size"], seed=seed, **scale)
    model = _round_start(policy, base)
    settings = TrainerSettings(**training.trainer_kwargs())
    n = train_stream(model, spec, epochs=fit["epochs"], lr=fit["lr"], seed=seed, settings=settings)
    return model_to_vector(model), n

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
from pathlib import Path

import numpy as np
import torch

from bank_node.checks import Refused
from bank_node.config import Evaluation, NodeConfig
from bank_node.config_training import TrainingConfig
from bank_node.feature_engines import features_by_date
from bank_node.features_duckdb import EngineSettings
from bank_node.stream_periods import (
    PeriodEdges,
    PeriodScores,
    held_out_scores,
    period_edges,
    training_reference,
)
from bank_node.train_session import ModelRecipe, train_on_nodes
from bank_node.training import Normalizer, _local_fit, metrics_from_scores, round_start
from models.drift import Reference
from models.features import FEATURE_NAMES
from models.stream_data import StreamSpec, parquet_files, stream_moments
from models.training import TrainerSettings, train_stream
from models.vector import model_to_vector
from protocol import DEFAULT_FEATURE_SET, PolicySnapshot


@dataclass(frozen=True)
class StreamedData:
    """The bank's features as Parquet files, and where its periods start and end (ns)."""

    files: tuple[Path, ...]
    edges: PeriodEdges

    @property
    def before_tick(self) -> int:
        return self.edges.train_end

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
    return StreamedData(files, period_edges(files, evaluation))


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
    correction: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """A training round on the node's own data, streamed; (weights, sample count)."""
    data = streamed_data(config)
    return train_round_stream(data, config.training, policy, base, seed, norm, correction)


def train_round_stream(
    data: StreamedData,
    training: TrainingConfig,
    policy: PolicySnapshot,
    base: np.ndarray | None,
    seed: int,
    norm: Normalizer | None,
    correction: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """`bank_node.training.train_round` on the streamed rows; (weights, sample count).

    The policy's ``batch_size`` is the rows of one optimiser step over all training
    processes together, so the devices change the speed, not the model (within rounding).
    Under ``num_nodes > 1`` this is NODE_RANK 0: it announces the session to the other
    machines' workers and fails (`SessionError`) unless they all join
    (`bank_node.train_session`).
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
    model = round_start(policy, base, correction)
    settings = TrainerSettings(**training.trainer_kwargs())
    epochs, lr = fit["epochs"], fit["lr"]
    if settings.num_nodes == 1:
        n = train_stream(model, spec, epochs=epochs, lr=lr, seed=seed, settings=settings)
        return model_to_vector(model), n
    if training.session_dir is None:  # the config's reader refuses this already
        raise ValueError("[training] num_nodes > 1 needs session_dir")
    recipe = ModelRecipe(policy.model_spec, policy.n_features, lr, policy.fedprox_mu)
    n = train_on_nodes(
        model, spec, recipe, epochs=epochs, lr=lr, seed=seed, settings=settings,
        directory=training.session_dir, join_timeout_seconds=training.join_timeout_seconds,
        correction=correction,
    )  # fmt: skip
    return model_to_vector(model), n


def held_out(
    config: NodeConfig, nets: list[torch.nn.Module], norm: Normalizer | None
) -> tuple[PeriodScores, PeriodScores]:
    """The validation and test periods of the node's own data scored by ``nets``, streamed."""
    data = streamed_data(config)
    return held_out_scores(data.files, FEATURE_NAMES, data.edges, nets, norm)


def node_evaluate(
    config: NodeConfig, net: torch.nn.Module, norm: Normalizer | None
) -> dict[str, float | None]:
    """`bank_node.training.evaluate` of ``net`` on the node's held-out periods, streamed."""
    val, test = held_out(config, [net], norm)
    return metrics_from_scores(val.labels, val.scores[0], test.labels, test.scores[0])


def node_drift_reference(
    config: NodeConfig, net: torch.nn.Module, norm: Normalizer | None
) -> Reference | None:
    """The drift reference of ``net`` over the node's training period, streamed."""
    spec = streamed_data(config).spec(config.training, shuffle=False)
    return training_reference(spec, net, norm, FEATURE_NAMES)

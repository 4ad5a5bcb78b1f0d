"""The ``[training]`` table of the node config: rows in memory or streamed, and on what devices.

Kept apart from ``bank_node.config`` (which only registers the table): its reader raises
``ValueError`` and ``config`` turns that into a ``ConfigError`` naming the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRAINING_DATA = ("memory", "stream")
# The out-of-core feature engines (bank_node.feature_engines): the same values either way.
FEATURE_ENGINES = ("duckdb", "numpy")
ACCELERATORS = ("auto", "cpu", "gpu")
# ``ddp`` (and ``auto`` on several devices, which picks it) starts each extra process by
# running the node's own command line again: each would poll the portal and upload. Under
# ``ddp_spawn`` the extra processes only train and the node's process makes the update once.
STRATEGIES = ("auto", "ddp_spawn")
# DuckDB's memory_limit syntax, as bank_node.features_duckdb.EngineSettings checks it.
_MEMORY = re.compile(r"\d+(\.\d+)?\s*(B|[KMGT]i?B)", re.IGNORECASE)


@dataclass(frozen=True)
class TrainingConfig:
    """How the node trains (``[training]``); every key optional."""

    # memory: the whole file as arrays (small banks, as before); stream: Parquet features.
    data: str = "memory"
    engine: str = "numpy"
    buffer_rows: int = 262_144
    memory_limit: str = "2GB"
    # Where the staged rows and the Parquet features go; unset: state_dir/train-work.
    work_dir: Path | None = None
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    # num_nodes > 1: where this node announces each training session to the other machines'
    # `bank-node train-worker` (bank_node/train_session.py), and how long it waits for them.
    session_dir: Path | None = None
    join_timeout_seconds: float = 600.0

    @property
    def streams(self) -> bool:
        return self.data == "stream"

    def trainer_kwargs(self) -> dict[str, Any]:
        """``models.training.TrainerSettings``' arguments (the ML stack is not imported here:
        the node reads its config before it needs torch)."""
        return {
            "accelerator": self.accelerator,
            "devices": self.devices,
            "num_nodes": self.num_nodes,
            "strategy": self.strategy,
        }


TRAINING_REFERENCE: dict[str, tuple[str | None, str]] = {
    "training": (
        None,
        "How the node trains: the bank's rows in memory or streamed from Parquet, and on "
        "which devices (docs/scale.md, 'Training that streams').",
    ),
    "training.data": (
        None,
        '"memory": the whole file as arrays (small banks); "stream": features written to '
        "Parquet by day (by the engine below, within memory_limit), the statistics round's "
        "moments in one pass and training in batches, memory independent of the number of rows.",
    ),
    "training.engine": (
        None,
        "Streamed training (and bank-node score): the engine that writes the features, "
        '"numpy" (bank_node/features_numpy.py: bit-identical to the in-memory features, a '
        'third of DuckDB\'s CPU) or "duckdb" (the SQL of models/features_sql.py, which Spark '
        "SQL also runs); both within memory_limit (docs/scale.md).",
    ),
    "training.buffer_rows": (
        None,
        "Streamed training: rows shuffled together; a row only meets rows of its own buffer "
        "(a few days' rows at a time when small; every row: a full shuffle).",
    ),
    "training.memory_limit": (
        None,
        "Streamed training: the feature engine's memory limit (e.g. 2GB; DuckDB's, or the "
        "size of the numpy engine's account buckets).",
    ),
    "training.work_dir": (
        '"state/train-work"',
        "Streamed training: where the staged rows, the Parquet features and DuckDB's spills "
        "go; unset: state_dir/train-work.",
    ),
    "training.accelerator": (
        None,
        'Lightning\'s accelerator for streamed training: "auto" (a GPU when present, else the '
        'CPU), "cpu" or "gpu"; data = "memory" trains on the CPU, as before.',
    ),
    "training.devices": (
        None,
        'Devices (CPU processes or GPUs) per machine, or "auto"; more than 1 needs '
        'data = "stream" and strategy = "ddp_spawn".',
    ),
    "training.num_nodes": (
        None,
        "Machines training together (Lightning's num_nodes): this node is NODE_RANK 0 and "
        "each other machine runs `bank-node train-worker` (docs/scale.md, 'Several "
        "machines'); more than 1 needs strategy = ddp_spawn, session_dir, and MASTER_ADDR "
        "and MASTER_PORT in the environment of every machine.",
    ),
    "training.strategy": (
        None,
        '"auto" (one process) or "ddp_spawn" (data-parallel over devices x num_nodes '
        "processes; policy batch_size is the rows of one step over all of them together).",
    ),
    "training.session_dir": (
        '"/shared/sessions"',
        "num_nodes > 1: a directory every machine mounts (like the Parquet features in "
        "work_dir, which every machine reads at the same path), where this node announces "
        "each training session and the workers answer.",
    ),
    "training.join_timeout_seconds": (
        None,
        "num_nodes > 1: how long this node waits for every worker to join a session (and "
        "each training process for the others at a collective) before the round's training "
        "fails with an error naming the missing machines.",
    ),
}


def _choice(options: tuple[str, ...]) -> Callable[[str, Any, Path], str]:
    def read(name: str, value: Any, base: Path) -> str:
        if value not in options:
            listed = ", ".join(f'"{o}"' for o in options)
            raise ValueError(f"{name} must be one of {listed}, not {value!r}")
        return str(value)

    return read


def _count(name: str, value: Any, base: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
    return value


def _devices(name: str, value: Any, base: Path) -> int | str:
    return "auto" if value == "auto" else _count(name, value, base)


def _seconds(name: str, value: Any, base: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number of seconds > 0, not {value!r}")
    return float(value)


def _memory(name: str, value: Any, base: Path) -> str:
    if not isinstance(value, str) or not _MEMORY.fullmatch(value.strip()):
        raise ValueError(f'{name} must be a size like "2GB", "512MB" or "1.5GiB", not {value!r}')
    return value.strip()


def _path(name: str, value: Any, base: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'{name} must be a directory path in quotes, e.g. {name} = "work"')
    path = Path(value.strip())
    return path if path.is_absolute() else (base / path).resolve()


TRAINING_READERS: dict[str, Callable[[str, Any, Path], Any]] = {
    "data": _choice(TRAINING_DATA),
    "engine": _choice(FEATURE_ENGINES),
    "buffer_rows": _count,
    "memory_limit": _memory,
    "work_dir": _path,
    "accelerator": _choice(ACCELERATORS),
    "devices": _devices,
    "num_nodes": _count,
    "strategy": _choice(STRATEGIES),
    "session_dir": _path,
    "join_timeout_seconds": _seconds,
}


def read_training(name: str, table: dict[str, Any], base: Path) -> TrainingConfig:
    """The ``[training]`` table read and checked; relative paths are relative to ``base``."""
    config = TrainingConfig(
        **{k: TRAINING_READERS[k](f"{name}.{k}", v, base) for k, v in table.items()}
    )
    several = config.devices != 1 or config.num_nodes != 1
    if several and config.strategy != "ddp_spawn":
        raise ValueError(
            f"{name}: devices = {config.devices!r} and num_nodes = {config.num_nodes} need "
            f'strategy = "ddp_spawn" (with "auto" Lightning would start each extra process '
            "by running the node's command again)"
        )
    if several and not config.streams:
        raise ValueError(
            f'{name}: several training processes need data = "stream" (each reads its own '
            "shard of the streamed rows)"
        )
    if config.num_nodes > 1 and config.session_dir is None:
        raise ValueError(
            f"{name}: num_nodes = {config.num_nodes} needs session_dir, a directory every "
            "machine mounts, where this node announces training sessions to the workers"
        )
    return config

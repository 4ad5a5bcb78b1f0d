"""The out-of-core feature engine: DuckDB runs `models.features_sql` over staged Parquet.

Memory is bounded by DuckDB's ``memory_limit`` (its sorts, windows and joins spill to
``temp_directory``), not by the size of the bank's data; the output is Parquet, either
partitioned by date (``day=YYYY-MM-DD/``, for training) or one file ordered by ``rid``
(for scoring, whose output keeps the input's order).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from bank_node.config import ConfigError
from bank_node.staging import StagedInput, stage
from models.features import FEATURE_NAMES
from models.features_sql import CARRY, features_query

_MEMORY = re.compile(r"\d+(\.\d+)?\s*(B|[KMGT]i?B)", re.IGNORECASE)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class EngineSettings:
    """DuckDB's resources: a memory ceiling, where it spills, and its threads (all cores)."""

    memory_limit: str = "2GB"
    temp_directory: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    threads: int = field(default_factory=_cores)

    def __post_init__(self) -> None:
        if not _MEMORY.fullmatch(self.memory_limit):
            raise ConfigError(
                f"memory limit {self.memory_limit!r}: expected a size like 2GB, 512MB or 1.5GiB"
            )
        if self.threads < 1:
            raise ConfigError(f"threads must be at least 1, not {self.threads}")


def connect(settings: EngineSettings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that spills to ``settings.temp_directory`` past its memory limit."""
    settings.temp_directory.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={
        "memory_limit": settings.memory_limit,
        "temp_directory": str(settings.temp_directory),
        "threads": settings.threads,
        # Order comes from ORDER BY rid where it matters; keeping scan order costs memory.
        "preserve_insertion_order": False,
    })  # fmt: skip
    return con


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def write_features(
    staged: StagedInput,
    out: Path,
    *,
    settings: EngineSettings,
    partition_by_date: bool = True,
    float_type: str = "REAL",
) -> Path:
    """Features of every staged row to Parquet at ``out``; return what was written.

    ``partition_by_date``: a directory ``out`` with one ``day=...`` folder per date;
    otherwise the single file ``out``, rows in ``rid`` order.
    """
    query = features_query(
        f"read_parquet({_literal(staged.path)})", carry=CARRY, float_type=float_type
    )
    if partition_by_date:
        target = f"COPY ({query}) TO {_literal(out)} (FORMAT parquet, PARTITION_BY (day))"
    else:
        target = f"COPY ({query} ORDER BY rid) TO {_literal(out)} (FORMAT parquet)"
    con = connect(settings)
    try:
        if staged.rows == 0:
            _write_empty(con, query, out, partition_by_date)
        else:
            con.execute(target)
    except duckdb.Error as exc:
        # Out of memory or of spill space: a setting to change, not a crash to report.
        raise ConfigError(
            f"feature engine failed ({exc}); memory_limit is {settings.memory_limit} and "
            f"DuckDB spills to {settings.temp_directory}"
        ) from exc
    finally:
        con.close()
    return out


def _write_empty(
    con: duckdb.DuckDBPyConnection, query: str, out: Path, partition_by_date: bool
) -> None:
    """An empty input still gives a readable Parquet file with the feature columns."""
    table = con.sql(f"SELECT * FROM ({query}) LIMIT 0").to_arrow_table()  # noqa: S608
    if partition_by_date:
        out.mkdir(parents=True, exist_ok=True)
        out = out / "empty.parquet"
    pq.write_table(table, out)


def features_of(source: Path, work_dir: Path, *, settings: EngineSettings) -> Path:
    """Stage ``source`` (CSV, Parquet or a directory of them) and write its features, by date."""
    staged = stage(source, work_dir / "staged.parquet")
    return write_features(staged, work_dir / "features", settings=settings)


def frame_features(frame: pd.DataFrame, *, float_type: str = "REAL") -> np.ndarray:
    """`compute_features`' matrix for an in-memory normalised frame, computed by DuckDB.

    For tests and comparisons: rows in ``frame`` order, float32 (``REAL``) or float64.
    """
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frame.reset_index(drop=True).to_parquet(work / "input.parquet")
        staged = stage(work / "input.parquet", work / "staged.parquet")
        out = work / "features.parquet"
        settings = EngineSettings(memory_limit="1GB", temp_directory=work / "spill")
        write_features(
            staged, out, settings=settings, partition_by_date=False, float_type=float_type
        )
        table = pq.read_table(out, columns=["rid", *FEATURE_NAMES]).sort_by("rid")
    dtype = np.float32 if float_type == "REAL" else np.float64
    return (
        np.column_stack([table[n].to_numpy() for n in FEATURE_NAMES])
        .astype(dtype)
        .reshape(len(frame), len(FEATURE_NAMES))
    )

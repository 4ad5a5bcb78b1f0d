"""The out-of-core feature engines a node chooses between: DuckDB's SQL or numpy's arrays.

Both give `models.features.compute_features`' values from a CSV, a Parquet file or a
directory of them, within ``EngineSettings.memory_limit`` (docs/scale.md): ``duckdb`` runs
the SQL of `models.features_sql` (the same text Spark SQL runs on a cluster); ``numpy``
(`bank_node.features_numpy`) is bit-identical to pandas, with a third of DuckDB's CPU and
two thirds of pandas' (benchmarks/RESULTS.md), on every core. The node
picks one with ``[training] engine``; ``bank-node score --engine`` overrides it.
"""

from __future__ import annotations

from pathlib import Path

from bank_node import features_duckdb, features_numpy
from bank_node.config_training import FEATURE_ENGINES
from bank_node.features_duckdb import EngineSettings
from bank_node.staging import stage


def _known(engine: str) -> None:
    if engine not in FEATURE_ENGINES:
        raise ValueError(f"feature engine must be one of {FEATURE_ENGINES}, not {engine!r}")


def features_by_date(engine: str, source: Path, work_dir: Path, settings: EngineSettings) -> Path:
    """``source``'s features as Parquet under ``work_dir/features/day=YYYY-MM-DD/``."""
    _known(engine)
    if engine == "numpy":
        return features_numpy.features_of(source, work_dir, settings=settings)
    return features_duckdb.features_of(source, work_dir, settings=settings)


def features_in_order(
    engine: str, source: Path, work_dir: Path, settings: EngineSettings
) -> tuple[Path, tuple[Path, ...]]:
    """``source``'s features as one Parquet file in input (``rid``) order, and the input files
    (what each row's ``source`` column indexes)."""
    _known(engine)
    out = work_dir / "features.parquet"
    if engine == "numpy":
        _, files, _ = features_numpy.write_features(
            source, out, settings=settings, partition_by_date=False
        )
        return out, files
    staged = stage(source, work_dir / "staged.parquet")
    features_duckdb.write_features(staged, out, settings=settings, partition_by_date=False)
    return out, staged.files

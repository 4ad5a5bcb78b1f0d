"""Score transactions at volume: out-of-core features, then the model batch by batch.

`score_input` takes a CSV, a Parquet file or a directory of them, has a feature engine
(`bank_node.feature_engines`: DuckDB or numpy) write its features to one Parquet file in
input order, then
reads that file ``batch_rows`` rows at a time (``ParquetFile.iter_batches``) through the
model's own steps (`bank_node.scoring_model.ScoringModel`: ``normalise``, ``scores``,
``alerts``) and appends each batch's rows to the output CSV. Memory is the engine's limit
plus one batch, whatever the input's size.

Output: ``line,score,alert,model_version,reasons``, one row per input row in input order
(``model_version``: the version that scored the row, `ScoringModel.model_version`;
``reasons``: the top reasons of alerting rows in plain words, `bank_node.explain`); for a
directory, a first column ``file`` names each row's file. ``out`` ending in ``.parquet``
is written as Parquet, any other name as CSV (`bank_node.score_output`). A ``drift``
counter, when given, counts every batch's features and scores per day
(``models.drift.DailyCounts``).

The SQL (`models.features_sql`) defines the ``aml-v1`` feature set only. A model of another
set (``card-v1``, ``paysim-v1``: `models.feature_sets`) is scored from CSV input with the
set's own pandas function over the whole input in memory, then batch by batch as above; a
Parquet input is refused for it, naming the feature set.

A model of a ``counterparty_sketch`` policy reads six cross-bank columns after its feature
set's (`ScoringModel.cross_bank`). On the SQL path they are computed in one more pass over
the staged input rows, a chunk at a time, into a float32 file indexed by ``rid`` that each
batch joins on (24 bytes a row on disk, in the temporary directory).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from bank_node.data import DataError, load_transactions
from bank_node.explain import DEFAULT_REASONS, alert_reasons
from bank_node.feature_engines import features_in_order
from bank_node.features_duckdb import EngineSettings
from bank_node.score_output import open_sink
from bank_node.scoring_model import ScoringModel
from bank_node.sketch_scoring import cross_bank_file
from bank_node.staging import PARQUET_SUFFIXES, input_files
from models.drift import DailyCounts
from models.feature_sets import FeatureSet
from models.features import FEATURE_NAMES
from protocol import DEFAULT_FEATURE_SET as SQL_FEATURE_SET

BATCH_ROWS = 65_536


@dataclass(frozen=True)
class ScoreSummary:
    """What `score_input` wrote: rows, alerts among them, and where."""

    rows: int
    alerts: int
    out: Path


@dataclass(frozen=True)
class _Batch:
    """One batch of feature rows: which input rows they are, and their raw features."""

    files: list[str] | None  # each row's file name, when the input is a directory
    lines: np.ndarray
    raw: np.ndarray
    days: np.ndarray  # each row's calendar day (datetime64[D])


@dataclass(frozen=True)
class _Options:
    """What each batch adds besides scores: reasons for alerts, drift counts."""

    reasons: int = DEFAULT_REASONS
    drift: DailyCounts | None = None


def score_input(
    model: ScoringModel,
    source: Path,
    out: Path,
    *,
    settings: EngineSettings | None = None,
    batch_rows: int = BATCH_ROWS,
    reasons: int = DEFAULT_REASONS,
    drift: DailyCounts | None = None,
    engine: str = "numpy",
) -> ScoreSummary:
    """Score every row of ``source`` with ``model`` into the CSV ``out``, in bounded memory.

    Intermediate files (the staged input, the features) go to a temporary directory under
    ``settings.temp_directory`` and are removed afterwards; ``engine`` writes the features.
    """
    if model.policy.feature_set != SQL_FEATURE_SET:
        names = [p.name for p in input_files(source)] if source.is_dir() else None
        batches = _memory_batches(model, source, batch_rows)
        return _write_scores(model, batches, out, names is not None, _Options(reasons, drift))
    settings = settings or EngineSettings()
    settings.temp_directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.temp_directory, prefix="score-") as tmp:
        work = Path(tmp)
        features, files = features_in_order(engine, source, work, settings)
        names = [p.name for p in files] if source.is_dir() else None
        extra = None if model.cross_bank is None else cross_bank_file(model.cross_bank, files, work)
        batches = _batches(features, names, batch_rows, extra)
        return _write_scores(model, batches, out, names is not None, _Options(reasons, drift))


def _batches(
    path: Path, names: list[str] | None, batch_rows: int, extra: np.ndarray | None = None
) -> Iterator[_Batch]:
    """The feature file's rows in batches; ``extra`` (rows by ``rid``) appended to each."""
    columns = ["rid", "source", "line", "day", *FEATURE_NAMES]
    last_rid = -1
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns):
        rid = batch.column("rid").to_numpy()
        if len(rid) and (rid[0] <= last_rid or (np.diff(rid) <= 0).any()):
            raise RuntimeError(f"{path}: feature rows are not in input order")  # an engine bug
        last_rid = int(rid[-1]) if len(rid) else last_rid
        raw = np.column_stack([batch.column(n).to_numpy() for n in FEATURE_NAMES])
        if extra is not None:
            raw = np.hstack([raw, extra[rid]])
        files = None if names is None else [names[i] for i in batch.column("source").to_pylist()]
        days = np.asarray(batch.column("day").to_numpy(zero_copy_only=False), "datetime64[D]")
        yield _Batch(files, batch.column("line").to_numpy(), raw.astype(np.float32), days)


def _memory_batches(model: ScoringModel, source: Path, batch_rows: int) -> Iterator[_Batch]:
    """A feature set the SQL does not define: the whole CSV input in memory, then batches."""
    spec = model.feature_set
    files = input_files(source)
    frames = [_csv_frame(path, spec) for path in files]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    raw = model.features(frame).astype(np.float32)
    lines = np.concatenate([f.index.to_numpy(np.int64) + 2 for f in frames])
    which = np.concatenate([np.full(len(f), i) for i, f in enumerate(frames)])
    days = frame["timestamp"].to_numpy().astype("datetime64[D]")
    names = [p.name for p in files] if source.is_dir() else None
    for start in range(0, len(frame), batch_rows):
        part = slice(start, start + batch_rows)
        batch_files = None if names is None else [names[i] for i in which[part]]
        yield _Batch(batch_files, lines[part], raw[part], days[part])


def _csv_frame(path: Path, spec: FeatureSet) -> pd.DataFrame:
    """One CSV input, its index the rows' 0-based positions; it must hold the set's columns."""
    name = spec.name
    if path.suffix.lower() in PARQUET_SUFFIXES:
        raise DataError(
            path, None, None,
            f"feature set {name!r} is scored from CSV files only (the SQL engine that reads "
            f"Parquet computes {SQL_FEATURE_SET!r})",
        )  # fmt: skip
    frame = load_transactions(path)
    if lacking := spec.missing(frame.columns):
        raise DataError(
            path, 1, lacking[0], f"feature set {name!r} needs columns {lacking} this file lacks"
        )
    return frame


def _write_scores(
    model: ScoringModel, batches: Iterator[_Batch], out: Path, by_file: bool, options: _Options
) -> ScoreSummary:
    rows = alerts = 0
    sink = open_sink(out)
    try:
        for batch in batches:
            columns = _batch_columns(model, batch, options)
            sink.write(columns)
            rows += len(batch.lines)
            alerts += sum(columns["alert"])
        if rows == 0:  # the header (and the Parquet schema) of an empty output
            empty = _empty_batch(by_file, model.policy.n_features)
            sink.write(_batch_columns(model, empty, options))
    finally:
        sink.close()
    return ScoreSummary(rows, alerts, out)


def _empty_batch(by_file: bool, n_features: int) -> _Batch:
    no_rows = np.zeros((0, n_features), np.float32)
    no_days = np.zeros(0, "datetime64[D]")
    return _Batch([] if by_file else None, np.zeros(0, np.int64), no_rows, no_days)


def _batch_columns(model: ScoringModel, batch: _Batch, options: _Options) -> dict[str, list[Any]]:
    """The output columns of one batch (the single place a per-row column is added); the
    batch is also counted for drift when a counter is given."""
    normalised = model.normalise(batch.raw)
    scores = model.scores(normalised)
    alerts = model.alerts(scores)
    columns: dict[str, list[Any]] = {} if batch.files is None else {"file": batch.files}
    columns["line"] = batch.lines.tolist()
    columns["score"] = scores.astype(np.float64).tolist()  # the CSV sink shows six decimals
    columns["alert"] = alerts.astype(int).tolist()
    columns["model_version"] = [model.model_version] * len(scores)
    columns["reasons"] = alert_reasons(
        model.net, normalised, batch.raw, scores, model.threshold, top_k=options.reasons,
        feature_names=model.feature_names,
    )  # fmt: skip
    if options.drift is not None and len(scores):
        options.drift.add(batch.raw, scores, batch.days)
    return columns

"""Stage transaction inputs (a CSV, a Parquet file, or a directory of them) as one Parquet file.

The out-of-core feature engine (`bank_node.features_duckdb`) reads the staged file: every
input row once, normalised by the same readers as `bank_node.data.load_transactions`
(so a malformed cell is the same `DataError`, naming file, line and column), with the row
identity the features and scores join back on:

``rid``     the row's position over all inputs (files in name order, rows in file order)
``source``  the input file's index in `StagedInput.files`
``line``    a CSV row's line (the header is line 1); a Parquet row's 1-based position
``tick``, ``secs``, ``day``  the timestamp in nanoseconds, in seconds, and its date

Only one chunk of ``chunk_rows`` rows (or one block of an IBM CSV) is in memory at a time.
An IBM CSV is read by pyarrow's CSV reader (`bank_node.csv_arrow`) when it can vouch for
every value, and by `bank_node.data` otherwise (the same values, or the same error).
`staged_tables` yields the staged rows without writing them (the numpy feature engine reads
them so).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bank_node.csv_arrow import NotFast, arrow_tables
from bank_node.data import DataError, iter_transactions
from models.features import REQUIRED_COLUMNS

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
_TEXT = ["from_bank", "from_account", "to_bank", "to_account", "payment_currency",
         "receiving_currency", "payment_format"]  # fmt: skip
_AMOUNTS = ["amount_paid", "amount_received"]
SCHEMA = pa.schema(
    [("rid", pa.int64()), ("source", pa.int32()), ("line", pa.int64()), ("tick", pa.int64()),
     ("secs", pa.int64()), ("day", pa.date32()), *((name, pa.string()) for name in _TEXT),
     *((name, pa.float64()) for name in _AMOUNTS), ("label", pa.int8())]
)  # fmt: skip


@dataclass(frozen=True)
class StagedInput:
    """Where the staged rows are, how many, and which input file each ``source`` names."""

    path: Path
    rows: int
    files: tuple[Path, ...]


def input_files(source: Path) -> list[Path]:
    """The files a CSV/Parquet file or directory stands for, in the order rows are numbered."""
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in _SUFFIXES)
        if not files:
            raise DataError(source, None, None, "directory holds no .csv or .parquet file")
        return files
    if not source.exists():
        raise DataError(source, None, None, "does not exist")
    return [source]


_SUFFIXES = CSV_SUFFIXES + PARQUET_SUFFIXES


def stage(source: Path, out: Path, *, chunk_rows: int = 200_000) -> StagedInput:
    """Write every row of ``source`` to the Parquet file ``out``; return what was written."""
    files = input_files(source)
    rid = 0
    with pq.ParquetWriter(out, SCHEMA) as writer:
        for table in staged_tables(files, chunk_rows=chunk_rows):
            writer.write_table(table.cast(SCHEMA))
            rid += len(table)
    return StagedInput(out, rid, tuple(files))


def staged_tables(files: list[Path], *, chunk_rows: int = 200_000) -> Iterator[pa.Table]:
    """The staged rows of ``files`` (`input_files`' order), a chunk at a time.

    Columns as `SCHEMA`; text columns may come dictionary-encoded (``table.cast(SCHEMA)``
    makes them plain strings).
    """
    rid = 0
    for index, path in enumerate(files):
        for table in _file_tables(path, index, rid, chunk_rows):
            rid += len(table)
            yield table


def _file_tables(path: Path, index: int, rid: int, chunk_rows: int) -> Iterator[pa.Table]:
    """One file's staged rows: pyarrow's reader while it vouches for them, then pandas'."""
    done = 0
    if path.suffix.lower() in CSV_SUFFIXES:
        try:
            # Blocks of about chunk_rows rows (an IBM row is 100-160 bytes of text).
            blocks = arrow_tables(path, source=index, first_rid=rid, block_bytes=chunk_rows * 160)
            for table in blocks:
                done += len(table)
                yield table
            return
        except NotFast:
            pass  # bank_node.data reads the rows after `done`: its values, or its DataError
    for frame, lines in _frames(path, chunk_rows):
        position = lines - (2 if path.suffix.lower() in CSV_SUFFIXES else 1)
        keep = position >= done
        if keep.any():
            yield _table(frame[keep], lines[keep], rid + int(position[keep][0]), index)


def _frames(path: Path, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """Normalised chunks of one file, each with its rows' lines."""
    if path.suffix.lower() in PARQUET_SUFFIXES:
        yield from _parquet_frames(path, chunk_rows)
        return
    for frame in iter_transactions(path, chunksize=chunk_rows):
        yield frame, frame.index.to_numpy(np.int64) + 2


def _parquet_frames(path: Path, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(path, None, None, f"not a Parquet file: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in parquet.schema_arrow.names]
    if missing:
        raise DataError(path, None, missing[0], f"required columns {missing} missing")
    first = 1
    columns = [*REQUIRED_COLUMNS, *(["label"] if "label" in parquet.schema_arrow.names else [])]
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
        frame = batch.to_pandas()
        _check_parquet(frame, path, first)
        yield frame, np.arange(first, first + len(frame), dtype=np.int64)
        first += len(frame)


def _check_parquet(frame: pd.DataFrame, path: Path, first: int) -> None:
    """A Parquet chunk's types and values as the CSV readers would insist on them."""
    if frame["timestamp"].dtype.kind != "M":
        raise DataError(path, None, "timestamp", "expected a timestamp column")
    checks = {"timestamp": frame["timestamp"].isna().to_numpy()}
    for name in _AMOUNTS:
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
        checks[name] = ~(np.isfinite(values) & (values >= 0))
    for name in _TEXT:
        checks[name] = frame[name].isna().to_numpy() | (frame[name].astype(str) == "").to_numpy()
    for name, bad in checks.items():
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + first
            raise DataError(path, row, name, "missing, empty or negative value (row number)")


def _table(frame: pd.DataFrame, lines: np.ndarray, rid: int, source: int) -> pa.Table:
    stamps = frame["timestamp"].to_numpy().astype("datetime64[ns]")
    label = frame["label"].to_numpy(np.int8) if "label" in frame else None
    columns = {
        "rid": np.arange(rid, rid + len(frame), dtype=np.int64),
        "source": np.full(len(frame), source, dtype=np.int32),
        "line": lines,
        "tick": stamps.astype(np.int64),
        # The seconds compute_features uses (models.features._seconds).
        "secs": stamps.astype("datetime64[s]").astype(np.int64),
        "day": stamps.astype("datetime64[D]"),
        **{name: frame[name].astype(str).to_numpy(dtype=object) for name in _TEXT},
        **{name: frame[name].to_numpy(dtype=np.float64) for name in _AMOUNTS},
        "label": label,
    }
    arrays = [
        pa.nulls(len(frame), pa.int8())
        if columns[f.name] is None
        else pa.array(columns[f.name], type=f.type)
        for f in SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)

"""The file `bank-node score` writes, CSV or Parquet by its suffix, and reading it back.

Both hold the same columns in the same order: ``file`` (a directory's rows only),
``line``, ``score``, ``alert``, ``model_version`` and ``reasons``. The CSV writes each
score with six decimals, as it always has; Parquet keeps the double. `read_scored` gives
either back as rows of strings, the shape ``bank-node cases export`` reads.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from bank_node.config import ConfigError

PARQUET_SUFFIX = ".parquet"
READ_BATCH_ROWS = 65_536

_TYPES = {
    "file": pa.string(),
    "line": pa.int64(),
    "score": pa.float64(),
    "alert": pa.int8(),
    "model_version": pa.string(),
    "reasons": pa.string(),
}


class ScoreSink(Protocol):
    """Where one batch of output columns goes; closed once, after the last batch."""

    def write(self, columns: dict[str, list[Any]]) -> None: ...

    def close(self) -> None: ...


class CsvSink:
    """The CSV output: the header from the first batch, each score with six decimals."""

    def __init__(self, out: Path) -> None:
        self.handle = out.open("w", newline="")
        self.writer = csv.writer(self.handle)
        self.header_written = False

    def write(self, columns: dict[str, list[Any]]) -> None:
        if not self.header_written:
            self.writer.writerow(columns)
            self.header_written = True
        shown = {**columns, "score": [f"{score:.6f}" for score in columns["score"]]}
        self.writer.writerows(zip(*shown.values(), strict=True))

    def close(self) -> None:
        self.handle.close()


class ParquetSink:
    """The Parquet output: one row group per batch, the schema from the first batch."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.writer: pq.ParquetWriter | None = None

    def write(self, columns: dict[str, list[Any]]) -> None:
        table = pa.table({name: pa.array(values, _TYPES[name]) for name, values in columns.items()})
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.out, table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def open_sink(out: Path) -> ScoreSink:
    """Parquet for ``*.parquet``, CSV for any other name (what `score` always wrote)."""
    if out.suffix.lower() == PARQUET_SUFFIX:
        return ParquetSink(out)
    return CsvSink(out)


def read_scored(path: Path) -> tuple[list[str], Iterator[dict[str, str]]]:
    """The columns of a scored file and its rows as strings; ConfigError if unreadable."""
    if path.suffix.lower() == PARQUET_SUFFIX:
        return _read_parquet(path)
    try:
        handle = open(path, newline="")
    except OSError as exc:
        raise ConfigError(f"--from {path}: cannot read: {exc.strerror}") from exc
    reader = csv.DictReader(handle)
    columns = list(reader.fieldnames or [])
    return columns, _closing(handle, reader)


def _closing(handle: Any, rows: Iterator[dict[str, str]]) -> Iterator[dict[str, str]]:
    with handle:
        yield from rows


def _read_parquet(path: Path) -> tuple[list[str], Iterator[dict[str, str]]]:
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError(f"--from {path}: not a Parquet file written by `score`: {exc}") from exc
    return list(parquet.schema_arrow.names), _parquet_rows(parquet)


def _parquet_rows(parquet: pq.ParquetFile) -> Iterator[dict[str, str]]:
    for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS):
        for row in batch.to_pylist():
            yield {name: "" if value is None else str(value) for name, value in row.items()}

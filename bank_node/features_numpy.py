"""The numpy feature engine: `compute_features`' exact values, out of core, at array speed.

Three passes over files in a work directory (`bank_node.feature_buckets`):

1. the inputs are read once (`bank_node.staging.staged_tables`: pyarrow's CSV reader when it
   can vouch for the values) and every row goes to its rid range's file and to the account
   bucket files of its two ends;
2. each bucket's account features (`models.features_vector.account_columns`) are written as
   part files by range, ``threads`` buckets at a time;
3. each range's rows get their own features (`models.features_vector.row_columns`) and
   their two ends' parts, and are written as Parquet: by date (``out/day=YYYY-MM-DD/``) for
   training, or as one file in ``rid`` order for scoring.

Memory is set by ``memory_limit``: it sizes the buckets (the number of rows whose account
features are computed at once) and the ranges, so it does not grow with the input; a bucket
over its budget (one with a very busy account) is computed in time slices that fit it. The values
equal `models.features.compute_features` bit for bit (after and before the float32 cast).
"""

from __future__ import annotations

import itertools
import math
import shutil
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bank_node.feature_buckets import Layout, bucket_features, partition, read_ipc
from bank_node.features_duckdb import EngineSettings
from bank_node.staging import PARQUET_SUFFIXES, input_files, staged_tables
from models.features import FEATURE_NAMES
from models.features_vector import DST_FEATURES, SRC_FEATURES, row_columns

# Peak bytes per row while a bucket's account features are computed (an estimate: some 25
# eight-byte arrays over a row's two events, plus its outputs), and while a range is put
# together and written. With 2GB on 2 threads the peak RSS was 1.8-2.1 GB from 5M to 20M rows.
_BUCKET_BYTES_PER_ROW = 1_000
_RANGE_BYTES_PER_ROW = 600
# Peak bytes per event while a slice of a bucket over its budget is computed (the slice's
# events joined with their history, four running sums by a Python loop; measured: some 800).
_SLICE_BYTES_PER_EVENT = 800
# Buckets hold this share of a bucket's budget on average: hashing spreads accounts evenly,
# so a bucket is only over its budget with a very busy account, and then is sliced.
_BUCKET_FILL = 0.8
# Below this many rows one bucket on one thread is quicker than splitting the work.
_SPLIT_ROWS = 200_000
_CARRY = [("rid", pa.int64()), ("source", pa.int32()), ("line", pa.int64()),
          ("tick", pa.int64()), ("label", pa.int8())]  # fmt: skip
# LZ4 without dictionaries: a third of snappy-with-dictionaries' CPU to write and to read
# back, and smaller files for these columns (measured on 1M rows of features).
_PARQUET = {"compression": "lz4", "use_dictionary": False, "write_statistics": ["rid", "tick"]}
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def memory_bytes(limit: str) -> int:
    """``"2GB"``, ``"512MB"``, ``"1.5GiB"`` in bytes (`EngineSettings` checked the syntax)."""
    text = limit.strip().lower()
    unit = next(u for u in sorted(_UNITS, key=len, reverse=True) if text.endswith(u))
    return int(float(text[: -len(unit)]) * _UNITS[unit])


def output_schema(partition_by_date: bool) -> pa.Schema:
    """The feature files' columns: the carried row identity, then `FEATURE_NAMES` as float32."""
    day = [] if partition_by_date else [("day", pa.date32())]
    return pa.schema([*_CARRY, *day, *((n, pa.float32()) for n in FEATURE_NAMES)])


def estimate_rows(files: list[Path]) -> int:
    """Rows in ``files``, roughly: Parquet metadata, or a CSV's size over its first lines'."""
    total = 0
    for path in files:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            total += pq.ParquetFile(path).metadata.num_rows
            continue
        with path.open("rb") as handle:
            head = handle.read(1 << 20)
        lines = max(head.count(b"\n"), 1)
        total += int(path.stat().st_size * lines / max(len(head), 1))
    return total


def layout_for(work: Path, rows: int, settings: EngineSettings, *, slicing: bool = True) -> Layout:
    """Buckets and ranges small enough that ``threads`` of them fit in ``memory_limit``, and
    at least one per thread (above `_SPLIT_ROWS`), so that every core has one to work on.

    A bucket's budget is ``2 * budget_rows`` events (a row is an event at each end); buckets
    are sized to hold 80 % of that on average, so that only a bucket with a very busy account
    (or a rare uneven one) is over it. Such a bucket is computed in time slices of at most
    ``budget / 800 bytes`` events, history included (``slicing=False``: never, for
    comparisons).
    """
    budget = memory_bytes(settings.memory_limit) // settings.threads
    budget_rows = max(100, budget // _BUCKET_BYTES_PER_ROW)
    buckets = math.ceil(rows / (budget_rows * _BUCKET_FILL))
    range_rows = max(100, budget // _RANGE_BYTES_PER_ROW)
    if rows >= _SPLIT_ROWS:
        buckets = max(buckets, settings.threads)
        range_rows = min(range_rows, math.ceil(rows / settings.threads))
    slice_events = max(100, budget // _SLICE_BYTES_PER_EVENT) if slicing else 0
    return Layout(work, max(1, buckets), range_rows, slice_events, 2 * budget_rows)


def write_features(
    source: Path,
    out: Path,
    *,
    settings: EngineSettings,
    partition_by_date: bool = True,
    slicing: bool = True,
) -> tuple[Path, tuple[Path, ...], int]:
    """Features of every row of ``source`` (CSV, Parquet or a directory) to Parquet at ``out``.

    Returns ``(out, the input files in rid order, rows)``. ``partition_by_date``: a directory
    ``out`` with one ``day=...`` folder per date; otherwise the single file ``out``, rows in
    ``rid`` order. Intermediate files go under ``settings.temp_directory`` and are removed.
    ``slicing=False``: every bucket in one piece, however large (for comparisons).
    """
    files = input_files(source)
    settings.temp_directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.temp_directory, prefix="numpy-") as tmp:
        layout = layout_for(Path(tmp), estimate_rows(files), settings, slicing=slicing)
        rows = partition(staged_tables(files), layout)
        _in_threads(lambda b: bucket_features(layout, b), range(layout.buckets), settings)
        ranges = range(math.ceil(rows / layout.range_rows))
        if partition_by_date:
            out.mkdir(parents=True, exist_ok=True)
            _in_threads(lambda r: _write_days(out, r, assemble(layout, r, False)), ranges, settings)
        else:
            _write_ordered(out, (assemble(layout, r, True) for r in ranges))
        if rows == 0:
            _write_empty(out, partition_by_date)
    return out, tuple(files), rows


def _in_threads(
    task: Callable[[int], object], items: Iterable[int], settings: EngineSettings
) -> None:
    """``task`` for every item, ``threads`` at a time (numpy and Arrow release the GIL)."""
    with ThreadPoolExecutor(max_workers=settings.threads) as pool:
        for done in [pool.submit(task, item) for item in items]:
            done.result()


def assemble(layout: Layout, r: int, with_day: bool) -> pa.Table:
    """Pass 3: range ``r``'s rows with every feature, in ``rid`` order."""
    rows = read_ipc(layout.rows(r))
    first = rows["rid"][0].as_py()
    cols = row_columns(
        rows["secs"].to_numpy(), rows["amount_paid"].to_numpy(), rows["format_code"].to_numpy(),
        {n: rows[n].to_numpy(zero_copy_only=False)
         for n in ("cross_bank", "currency_mismatch", "self_transfer")},
    )  # fmt: skip
    features = {n: v.astype(np.float32) for n, v in cols.items()}
    for side, names in (("src", SRC_FEATURES), ("dst", DST_FEATURES)):
        features |= _side(layout, side, r, names, first, len(rows))
    carry = {name: rows[name] for name, _ in _CARRY}
    day = {"day": rows["day"]} if with_day else {}
    table = {**carry, **day, **{n: features[n] for n in FEATURE_NAMES}}
    return pa.table(table, schema=output_schema(not with_day))


def _side(
    layout: Layout, side: str, r: int, names: list[str], first: int, n: int
) -> dict[str, np.ndarray]:
    """One side's features of range ``r`` from every bucket's part, placed by rid."""
    out = {name: np.full(n, np.nan, np.float32) for name in names}
    filled = 0
    for b in range(layout.buckets):
        path = layout.part(side, r, b)
        if not path.exists():
            continue
        part = read_ipc(path)
        at = part["rid"].to_numpy() - first
        for name in names:
            out[name][at] = part[name].to_numpy()
        filled += len(part)
        path.unlink()
    if filled != n:  # every row has exactly one sender and one receiver
        raise RuntimeError(f"range {r}: {filled} {side} features for {n} rows")
    return out


def _write_days(out: Path, r: int, table: pa.Table) -> None:
    """Range ``r``'s rows as one file per date under ``out/day=YYYY-MM-DD/``."""
    days = read_days(table)
    if (np.diff(days) < 0).any():  # a file not in time order
        order = np.argsort(days, kind="stable")
        table, days = table.take(pa.array(order)), days[order]
    bounds = np.flatnonzero(np.r_[True, days[1:] != days[:-1], True])
    dates = days.astype("datetime64[D]")
    for start, stop in itertools.pairwise(bounds):
        folder = out / f"day={dates[start]}"
        folder.mkdir(exist_ok=True)
        path = folder / f"part-{r:05d}.parquet"
        pq.write_table(table.slice(start, stop - start), path, **_PARQUET)


def read_days(table: pa.Table) -> np.ndarray:
    """Each row's date as days since 1970 (from its ``tick``)."""
    return table["tick"].to_numpy() // (86_400 * 1_000_000_000)


def _write_ordered(out: Path, tables: Iterable[pa.Table]) -> None:
    with pq.ParquetWriter(out, output_schema(False), **_PARQUET) as writer:
        for table in tables:
            writer.write_table(table)


def _write_empty(out: Path, partition_by_date: bool) -> None:
    """An empty input still gives a readable Parquet file with the feature columns."""
    if partition_by_date:
        pq.write_table(output_schema(True).empty_table(), out / "empty.parquet")


def features_of(source: Path, work_dir: Path, *, settings: EngineSettings) -> Path:
    """``source``'s features by date under ``work_dir/features`` (as the DuckDB engine's)."""
    features = work_dir / "features"
    shutil.rmtree(features, ignore_errors=True)
    return write_features(source, features, settings=settings)[0]


def frame_features(frame: pd.DataFrame, *, memory_limit: str = "1GB") -> np.ndarray:
    """`compute_features`' matrix for an in-memory normalised frame, by this engine.

    For tests and comparisons: rows in ``frame`` order, float32; a small ``memory_limit``
    splits even a small frame into several buckets and ranges.
    """
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frame.reset_index(drop=True).to_parquet(work / "input.parquet")
        settings = EngineSettings(memory_limit=memory_limit, temp_directory=work / "spill")
        out = write_features(
            work / "input.parquet", work / "features.parquet", settings=settings,
            partition_by_date=False,
        )[0]  # fmt: skip
        table = pq.read_table(out, columns=FEATURE_NAMES)
    return (
        np.column_stack([table[n].to_numpy() for n in FEATURE_NAMES])
        .astype(np.float32)
        .reshape(len(frame), len(FEATURE_NAMES))
    )

"""The numpy engine's first two passes: rows split by account bucket, then each bucket's features.

`partition` reads the staged rows once. Every row goes to the range file of its ``rid``
(``rid // range_rows``: the columns its own features need and what the output carries) and to
the bucket file of its sender's account and of its receiver's (``hash(bank, account) %
buckets``; once when both are in one bucket), flagged with which of its ends belong there.
A bucket therefore holds every event of its accounts. `bucket_features` computes one bucket's
account features with `models.features_vector.account_columns` (a bucket over its budget of
events, as a very busy account's is, in time slices: `models.features_sliced`) and writes them
as part files by range, so a range's rows can be put together without reading any other range.
Intermediate files are Arrow IPC streams (no compression, no encoding: written and read at
memory speed, and memory-mapped when read back).
"""

from __future__ import annotations

import functools
import itertools
import mmap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bank_node.bucket_slices import HashCollision, key_hashes, sliced_bucket
from models.features import PAYMENT_FORMATS
from models.features_vector import DST_FEATURES, SRC_FEATURES, AccountRows, account_columns

_SEP = "\x1f"  # between bank and account id: ids are only unique within a bank
ROW_SCHEMA = pa.schema([
    ("rid", pa.int64()), ("source", pa.int32()), ("line", pa.int64()), ("tick", pa.int64()),
    ("day", pa.date32()), ("label", pa.int8()), ("secs", pa.int64()),
    ("amount_paid", pa.float64()), ("format_code", pa.int8()), ("cross_bank", pa.bool_()),
    ("currency_mismatch", pa.bool_()), ("self_transfer", pa.bool_()),
])  # fmt: skip
BUCKET_SCHEMA = pa.schema([
    ("rid", pa.int64()), ("tick", pa.int64()), ("secs", pa.int64()), ("src", pa.string()),
    ("dst", pa.string()), ("amount_paid", pa.float64()), ("amount_received", pa.float64()),
    ("want_src", pa.bool_()), ("want_dst", pa.bool_()),
])  # fmt: skip


@dataclass(frozen=True)
class Layout:
    """Where the passes put their files, and how rows are cut: ``buckets`` account buckets,
    ranges of ``range_rows`` consecutive rids; a bucket with more than ``bucket_events``
    events is computed in time slices of at most ``slice_events`` (history included:
    `models.features_sliced`; 0: never)."""

    work: Path
    buckets: int
    range_rows: int
    slice_events: int = 0
    bucket_events: int = 0

    def rows(self, r: int) -> Path:
        return self.work / f"rows-{r:05d}.arrow"

    def bucket(self, b: int) -> Path:
        return self.work / f"bucket-{b:05d}.arrow"

    def part(self, side: str, r: int, b: int) -> Path:
        return self.work / f"{side}-{r:05d}-{b:05d}.arrow"


class _Writers:
    """One IPC stream writer per file, opened on first use."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.open: dict[Path, pa.ipc.RecordBatchStreamWriter] = {}

    def write(self, path: Path, table: pa.Table) -> None:
        if path not in self.open:
            self.open[path] = pa.ipc.new_stream(pa.OSFile(str(path), "wb"), self.schema)
        self.open[path].write_table(table)

    def close(self) -> None:
        for writer in self.open.values():
            writer.close()


def partition(tables: Iterable[pa.Table], layout: Layout) -> int:
    """Pass 1: every staged row to its range file and its ends' bucket files; the row count."""
    rows, buckets = _Writers(ROW_SCHEMA), _Writers(BUCKET_SCHEMA)
    count = 0
    try:
        for table in tables:
            src, dst = _key(table, "from"), _key(table, "to")
            _write_ranges(rows, layout, _row_table(table, src, dst))
            _write_buckets(buckets, layout, table, src, dst)
            count += len(table)
    finally:
        rows.close()
        buckets.close()
    return count


def _key(table: pa.Table, side: str) -> pa.Array:
    bank, account = table[f"{side}_bank"].cast(pa.string()), table[f"{side}_account"]
    return pc.binary_join_element_wise(bank, account.cast(pa.string()), _SEP).combine_chunks()


def _row_table(table: pa.Table, src: pa.Array, dst: pa.Array) -> pa.Table:
    """What a row's own features and the output need, the text reduced to flags and codes."""
    text = {n: table[n].cast(pa.string()) for n in
            ("from_bank", "to_bank", "payment_currency", "receiving_currency")}  # fmt: skip
    formats = pc.index_in(table["payment_format"].cast(pa.string()), pa.array(PAYMENT_FORMATS))
    columns = {
        **{n: table[n] for n in ("rid", "source", "line", "tick", "day", "label", "secs")},
        "amount_paid": table["amount_paid"],
        "format_code": pc.fill_null(formats, -1).cast(pa.int8()),
        "cross_bank": pc.not_equal(text["from_bank"], text["to_bank"]),
        "currency_mismatch": pc.not_equal(text["payment_currency"], text["receiving_currency"]),
        "self_transfer": pc.equal(src, dst),
    }
    return pa.table(columns, schema=ROW_SCHEMA)


def _write_ranges(writers: _Writers, layout: Layout, table: pa.Table) -> None:
    """Rows to the range files of their rids (rids are consecutive within a staged table)."""
    if len(table) == 0:
        return
    first = table["rid"][0].as_py()
    start = 0
    while start < len(table):
        r = (first + start) // layout.range_rows
        stop = min(len(table), (r + 1) * layout.range_rows - first)
        writers.write(layout.rows(r), table.slice(start, stop - start))
        start = stop


def bucket_of(keys: pa.Array, buckets: int) -> np.ndarray:
    """A stable hash of each key string (FNV-like over its bytes, then mixed), ``% buckets``."""
    return (key_hashes(keys) % np.uint64(buckets)).astype(np.int64)


def _write_buckets(
    writers: _Writers, layout: Layout, table: pa.Table, src: pa.Array, dst: pa.Array
) -> None:
    """Each row to its sender's bucket and its receiver's, with which ends belong there."""
    columns = {
        "rid": table["rid"], "tick": table["tick"], "secs": table["secs"], "src": src,
        "dst": dst, "amount_paid": table["amount_paid"],
        "amount_received": table["amount_received"],
    }  # fmt: skip
    if layout.buckets == 1:
        every = pa.array(np.ones(len(table), bool))
        flags = {"want_src": every, "want_dst": every}
        writers.write(layout.bucket(0), pa.table(columns | flags, schema=BUCKET_SCHEMA))
        return
    to_src, to_dst = bucket_of(src, layout.buckets), bucket_of(dst, layout.buckets)
    none = pa.array(np.zeros(len(table), bool))
    both = pa.table(columns | {"want_src": none, "want_dst": none}, schema=BUCKET_SCHEMA)
    for b in np.unique(np.concatenate([to_src, to_dst])):
        want_src, want_dst = to_src == b, to_dst == b
        keep = want_src | want_dst
        part = both.set_column(7, "want_src", pa.array(want_src)).set_column(
            8, "want_dst", pa.array(want_dst)
        )
        writers.write(layout.bucket(int(b)), part.filter(pa.array(keep)))


def read_ipc(path: Path) -> pa.Table:
    """An IPC stream file, memory-mapped (its pages are the page cache's, not copies)."""
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).read_all()


def bucket_features(layout: Layout, b: int) -> list[int]:
    """Pass 2: bucket ``b``'s sender and receiver features, one part file per range and side.

    Returns the events computed at once: one figure for the whole bucket, or one per slice.
    """
    path = layout.bucket(b)
    if not path.exists():
        return []
    table, pages = _mapped(path)
    with _PartWriters(layout, b) as parts:
        want = [table[c].to_numpy(zero_copy_only=False) for c in ("want_src", "want_dst")]
        events = want[0].astype(np.int8) + want[1]
        del want
        tick = table["tick"].to_numpy()
        # Rows came in rid order, so sorting on tick alone (stable) gives (tick, rid) order; a
        # file in time order needs no sort at all.
        order = np.argsort(tick, kind="stable") if (np.diff(tick) < 0).any() else None
        del tick
        if layout.slice_events and int(events.sum()) > layout.bucket_events:
            drop: Callable[[], None] = (
                functools.partial(pages.madvise, mmap.MADV_DONTNEED)
                if hasattr(mmap, "MADV_DONTNEED")  # not on Windows: the pages stay
                else lambda: None
            )
            try:
                held = sliced_bucket(table, order, events, (layout.slice_events, drop), parts.write)
            except HashCollision:  # two accounts' keys share a 64-bit hash: in one piece, exactly
                parts.reset()
                held = [int(events.sum())]
                _whole(table, order, parts)
        else:
            held = [int(events.sum())]
            _whole(table, order, parts)
    path.unlink()
    return held


def _whole(table: pa.Table, order: np.ndarray | None, parts: _PartWriters) -> None:
    """A bucket within its budget, in one piece."""
    # Account codes first: they do not depend on the order, and the strings are not moved.
    keys = pa.concat_arrays([*table["src"].chunks, *table["dst"].chunks])
    account = keys.dictionary_encode().indices.to_numpy().astype(np.int64)
    n = len(table)
    at = slice(None) if order is None else order
    rows = AccountRows(
        account[:n][at], account[n:][at], table["secs"].to_numpy()[at],
        table["amount_paid"].to_numpy()[at], table["amount_received"].to_numpy()[at],
        table["want_src"].to_numpy(zero_copy_only=False)[at],
        table["want_dst"].to_numpy(zero_copy_only=False)[at],
    )  # fmt: skip
    columns = account_columns(rows)
    rid = table["rid"].to_numpy()[at]
    parts.write("src", rid[columns.src_rows], columns.src)
    parts.write("dst", rid[columns.dst_rows], columns.dst)


def _mapped(path: Path) -> tuple[pa.Table, mmap.mmap]:
    """An IPC stream file as a table over a memory map of it, and the map (a sliced bucket
    drops the map's pages from this process as it goes: `bank_node.bucket_slices`)."""
    with path.open("rb") as handle:
        pages = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    return pa.ipc.open_stream(pa.BufferReader(pa.py_buffer(pages))).read_all(), pages


class _PartWriters:
    """A bucket's part files, one per side and range, written a slice at a time."""

    def __init__(self, layout: Layout, b: int) -> None:
        self.layout, self.b = layout, b
        self.writers = {
            side: _Writers(pa.schema([("rid", pa.int64()), *((n, pa.float32()) for n in names)]))
            for side, names in (("src", SRC_FEATURES), ("dst", DST_FEATURES))
        }

    def __enter__(self) -> _PartWriters:
        return self

    def __exit__(self, *exc: object) -> None:
        for writers in self.writers.values():
            writers.close()

    def reset(self) -> None:
        """Start the part files again (the next writes truncate them)."""
        for writers in self.writers.values():
            writers.close()
            writers.open.clear()

    def write(self, side: str, rid: np.ndarray, cols: dict[str, np.ndarray]) -> None:
        """One side's features (float32, as compute_features casts them) split by range."""
        names = SRC_FEATURES if side == "src" else DST_FEATURES
        ranges = rid // self.layout.range_rows
        table = pa.table({"rid": rid, **{n: cols[n].astype(np.float32) for n in names}})
        if len(rid) and ranges.min() != ranges.max():
            # Range numbers are small integers: a stable sort of them is a radix sort.
            order = np.argsort(ranges.astype(np.uint16 if ranges.max() < 2**16 else np.int64),
                               kind="stable")  # fmt: skip
            table, ranges = table.take(pa.array(order)), ranges[order]
        bounds = np.flatnonzero(np.r_[True, ranges[1:] != ranges[:-1], True])
        for start, stop in itertools.pairwise(bounds):
            path = self.layout.part(side, int(ranges[start]), self.b)
            self.writers[side].write(path, table.slice(start, stop - start))

"""The numpy engine's first two passes: rows split by account bucket, then each bucket's features.

`partition` reads the staged rows once. Every row goes to the range file of its ``rid``
(``rid // range_rows``: the columns its own features need and what the output carries) and to
the bucket file of its sender's account and of its receiver's (``hash(bank, account) %
buckets``; once when both are in one bucket), flagged with which of its ends belong there.
A bucket therefore holds every event of its accounts. `bucket_features` computes one bucket's
account features with `models.features_vector.account_columns` and writes them as one part
file per range, so a range's rows can be put together without reading any other range.
Intermediate files are Arrow IPC streams (no compression, no encoding: written and read at
memory speed, and memory-mapped when read back).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.features import PAYMENT_FORMATS
from models.features_vector import DST_FEATURES, SRC_FEATURES, AccountRows, account_columns

_SEP = "\x1f"  # between bank and account id: ids are only unique within a bank
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))  # splitmix64's finaliser
_POWERS = np.cumprod(np.full(64, 0x100000001B3, dtype=np.uint64), dtype=np.uint64)  # FNV prime
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
    ranges of ``range_rows`` consecutive rids."""

    work: Path
    buckets: int
    range_rows: int

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
    keys = keys.cast(pa.string())
    offsets = np.frombuffer(keys.buffers()[1], np.int32, len(keys) + 1, keys.offset * 4)
    data = np.frombuffer(keys.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    starts, lengths = offsets[:-1] - offsets[0], np.diff(offsets)
    position = np.arange(len(data)) - np.repeat(starts, lengths)
    weighted = (data.astype(np.uint64) + np.uint64(1)) * _POWERS[position % 64]
    h = np.add.reduceat(weighted, starts) if len(data) else np.zeros(0, np.uint64)
    h = np.where(lengths > 0, h, np.uint64(0))  # reduceat's value for an empty string
    for shift, factor in ((30, _MIX[0]), (27, _MIX[1])):
        h = (h ^ (h >> np.uint64(shift))) * factor
    return ((h ^ (h >> np.uint64(31))) % np.uint64(buckets)).astype(np.int64)


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


def bucket_features(layout: Layout, b: int) -> None:
    """Pass 2: bucket ``b``'s sender and receiver features, one part file per range and side."""
    path = layout.bucket(b)
    if not path.exists():
        return
    table = read_ipc(path)
    # Account codes first: they do not depend on the order, and the strings are not moved.
    keys = pa.concat_arrays([*table["src"].chunks, *table["dst"].chunks])
    codes = keys.dictionary_encode()
    account = codes.indices.to_numpy().astype(np.int64)
    n = len(table)
    tick = table["tick"].to_numpy()
    # Rows came in rid order, so sorting on tick alone (stable) gives (tick, rid) order; a
    # file in time order needs no sort at all.
    order = np.argsort(tick, kind="stable") if (np.diff(tick) < 0).any() else slice(None)
    rows = AccountRows(
        account[:n][order], account[n:][order], table["secs"].to_numpy()[order],
        table["amount_paid"].to_numpy()[order], table["amount_received"].to_numpy()[order],
        table["want_src"].to_numpy(zero_copy_only=False)[order],
        table["want_dst"].to_numpy(zero_copy_only=False)[order],
    )  # fmt: skip
    columns = account_columns(rows)
    rid = table["rid"].to_numpy()[order]
    _write_parts(layout, "src", b, rid[columns.src_rows], columns.src, SRC_FEATURES)
    _write_parts(layout, "dst", b, rid[columns.dst_rows], columns.dst, DST_FEATURES)
    path.unlink()


def _write_parts(
    layout: Layout, side: str, b: int, rid: np.ndarray, cols: dict[str, np.ndarray],
    names: list[str],
) -> None:  # fmt: skip
    """One side's features (float32, as compute_features casts them) split by range."""
    ranges = rid // layout.range_rows
    table = pa.table({"rid": rid, **{n: cols[n].astype(np.float32) for n in names}})
    if len(rid) and ranges.min() != ranges.max():
        # Range numbers are small integers: a stable sort of them is a radix sort.
        order = np.argsort(ranges.astype(np.uint16 if ranges.max() < 2**16 else np.int64),
                           kind="stable")  # fmt: skip
        table, ranges = table.take(pa.array(order)), ranges[order]
    bounds = np.flatnonzero(np.r_[True, ranges[1:] != ranges[:-1], True])
    for start, stop in itertools.pairwise(bounds):
        path = layout.part(side, int(ranges[start]), b)
        with pa.ipc.new_stream(pa.OSFile(str(path), "wb"), table.schema) as writer:
            writer.write_table(table.slice(start, stop - start))

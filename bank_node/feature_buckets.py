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

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.features import PAYMENT_FORMATS
from models.features_sliced import sliced_account_columns
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
    ranges of ``range_rows`` consecutive rids; a bucket with more than ``slice_events``
    events (0: no limit) is computed in time slices of at most that many, history included
    (`models.features_sliced`)."""

    work: Path
    buckets: int
    range_rows: int
    slice_events: int = 0

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


def bucket_features(layout: Layout, b: int) -> list[int]:
    """Pass 2: bucket ``b``'s sender and receiver features, one part file per range and side.

    Returns the events computed at once: one figure for the whole bucket, or one per slice.
    """
    path = layout.bucket(b)
    if not path.exists():
        return []
    table = read_ipc(path)
    # Account codes first: they do not depend on the order, and the strings are not moved.
    codes = pa.concat_arrays([*table["src"].chunks, *table["dst"].chunks]).dictionary_encode()
    account, accounts = np.array(codes.indices), len(codes.dictionary)
    del codes  # the joined strings and the dictionary: no longer needed
    n = len(table)
    tick = table["tick"].to_numpy()
    # Rows came in rid order, so sorting on tick alone (stable) gives (tick, rid) order; a
    # file in time order needs no sort at all.
    order = np.argsort(tick, kind="stable") if (np.diff(tick) < 0).any() else None
    del tick
    want = [table[c].to_numpy(zero_copy_only=False) for c in ("want_src", "want_dst")]
    events = want[0].astype(np.int8) + want[1]
    with _PartWriters(layout, b) as parts:
        if layout.slice_events and int(events.sum()) > layout.slice_events:
            held = _sliced(layout, table, (account, accounts), order, parts)
        else:
            at = slice(None) if order is None else order
            rows = AccountRows(
                account[:n][at].astype(np.int64), account[n:][at].astype(np.int64),
                table["secs"].to_numpy()[at], table["amount_paid"].to_numpy()[at],
                table["amount_received"].to_numpy()[at], want[0][at], want[1][at],
            )  # fmt: skip
            columns = account_columns(rows)
            rid = table["rid"].to_numpy()[at]
            parts.write("src", rid[columns.src_rows], columns.src)
            parts.write("dst", rid[columns.dst_rows], columns.dst)
            held = [int(events.sum())]
    path.unlink()
    return held


def _sliced(
    layout: Layout,
    table: pa.Table,
    codes: tuple[np.ndarray, int],
    order: np.ndarray | None,
    parts: _PartWriters,
) -> list[int]:
    """A bucket too large for its budget, in time slices. The bucket-wide arrays are its
    account codes, time order and events a row (some 20 bytes a row); each slice's columns
    are gathered from the (memory-mapped) bucket file when it is computed."""
    account, accounts = codes
    n = len(table)
    bounds = np.cumsum([0, *(len(c) for c in table["rid"].chunks)])
    flags = [table[c].to_numpy(zero_copy_only=False) for c in ("want_src", "want_dst")]
    # The bucket's own accounts (those whose features are computed) first: the carried state
    # is per own account, while the other ends (a busy account's many counterparties) only
    # need a code for the pair counts.
    own = np.zeros(accounts, bool)
    own[account[:n][flags[0]]] = True
    own[account[n:][flags[1]]] = True
    recode = np.empty(accounts, np.int32)
    recode[own] = np.arange(int(own.sum()), dtype=np.int32)
    recode[~own] = np.arange(int(own.sum()), accounts, dtype=np.int32)
    account = recode[account]
    del recode

    def positions(start: int, stop: int) -> np.ndarray:
        return np.arange(start, stop) if order is None else order[start:stop]

    def rows_of(start: int, stop: int) -> AccountRows:
        at = positions(start, stop)
        return AccountRows(
            account[at].astype(np.int64), account[n + at].astype(np.int64),
            *(_gather(table[c], at, bounds) for c in ("secs", "amount_paid", "amount_received")),
            *(_gather(table[c], at, bounds) for c in ("want_src", "want_dst")),
        )  # fmt: skip

    def secs_at(i: int) -> int:
        return int(table["secs"][i if order is None else int(order[i])].as_py())

    events = flags[0].astype(np.int8) + flags[1]
    del flags
    held = []
    for start, stop, size, cols in sliced_account_columns(
        rows_of, events if order is None else events[order], secs_at,
        (int(own.sum()), accounts), layout.slice_events,
    ):  # fmt: skip
        rid = _gather(table["rid"], positions(start, stop), bounds)
        parts.write("src", rid[cols.src_rows], cols.src)
        parts.write("dst", rid[cols.dst_rows], cols.dst)
        held.append(size)
    return held


def _gather(column: pa.ChunkedArray, at: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """``column[at]`` chunk by chunk (``bounds``: the chunks' first rows, then the length):
    Arrow's ``take`` on a chunked column first joins every chunk into one copy."""
    chunk = np.searchsorted(bounds, at, side="right") - 1
    by_chunk = np.argsort(chunk, kind="stable")
    edges = np.searchsorted(chunk[by_chunk], np.arange(len(bounds)))
    out: np.ndarray | None = None
    for c in np.unique(chunk):
        mine = by_chunk[edges[c] : edges[c + 1]]
        values = column.chunk(int(c)).to_numpy(zero_copy_only=False)[at[mine] - bounds[c]]
        if out is None:
            out = np.empty(len(at), values.dtype)
        out[mine] = values
    return out if out is not None else column.chunk(0).to_numpy(zero_copy_only=False)[:0]


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

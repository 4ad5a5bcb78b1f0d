"""A numpy-engine bucket over its budget (one holding a very busy account), in time slices.

`sliced_bucket` walks the bucket's rows in ``(tick, rid)`` order a slice at a time and hands
each to `models.features_sliced`, which carries every account's state from slice to slice.
Besides a slice, it keeps per row of the bucket its events (1 byte) and their running count
(8 bytes), and its time order (8 bytes) only when the file is not in time order; per account
met so far, a code and its key (`_Codes`); the carried state. Account codes are assigned as
slices meet the accounts rather than by encoding the bucket's every key at once (some 140
bytes a row with Arrow's dictionary encoding), and the memory-mapped file's pages are
dropped from the process after each slice.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.features_sliced import PAIR_WIDTH, sliced_account_columns
from models.features_vector import AccountRows

_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))  # splitmix64's finaliser
_POWERS = np.cumprod(np.full(64, 0x100000001B3, dtype=np.uint64), dtype=np.uint64)  # FNV prime
_OTHER = PAIR_WIDTH // 2  # codes of the accounts of other buckets start here

Write = Callable[[str, np.ndarray, dict[str, np.ndarray]], None]


def key_hashes(keys: pa.Array) -> np.ndarray:
    """A stable 64-bit hash of each key string (FNV-like over its bytes, then mixed)."""
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
    return np.asarray(h ^ (h >> np.uint64(31)))


class HashCollision(Exception):
    """Two different account keys with one 64-bit hash (never seen; handled exactly)."""


class _Codes:
    """Exact codes ``offset, offset + 1, ...`` of account keys, in the order met: a key's
    64-bit hash is looked up among those met so far, and every key is checked against the
    first key met with its hash (`HashCollision` if they differ)."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.hashes = np.zeros(0, np.uint64)  # sorted
        self.codes = np.zeros(0, np.int64)  # of each sorted hash
        self.keys = pa.array([], pa.string())  # by code: the first key met

    def __call__(self, keys: pa.Array) -> np.ndarray:
        if len(keys) == 0:
            return np.zeros(0, np.int64)
        unique, first, inverse = np.unique(key_hashes(keys), return_index=True, return_inverse=True)
        at = np.minimum(np.searchsorted(self.hashes, unique), max(len(self.hashes) - 1, 0))
        known = (self.hashes[at] == unique) if len(self.hashes) else np.zeros(len(unique), bool)
        code = np.empty(len(unique), np.int64)
        code[known] = self.codes[at[known]]
        new = np.flatnonzero(~known)
        code[new] = np.arange(len(self.keys), len(self.keys) + len(new))
        self.keys = pa.concat_arrays([self.keys, keys.take(pa.array(first[new]))])
        hashes = np.concatenate([self.hashes, unique[new]])
        order = np.argsort(hashes, kind="stable")
        self.hashes, self.codes = hashes[order], np.concatenate([self.codes, code[new]])[order]
        codes = code[inverse]
        if not pc.all(pc.equal(keys, self.keys.take(pa.array(codes)))).as_py():
            raise HashCollision("two account keys share a 64-bit hash")
        return codes + self.offset


def sliced_bucket(
    table: pa.Table,
    order: np.ndarray | None,
    events: np.ndarray,
    budget: tuple[int, Callable[[], None]],
    write: Write,
) -> list[int]:
    """The bucket ``table``'s features in slices of at most ``budget[0]`` events (history
    included), written by ``write(side, rids, columns)``; ``budget[1]`` drops the bucket
    file's mapped pages. ``order``: the rows' ``(tick, rid)`` order (None: as they are);
    ``events``: each row's wanted ends. Returns the events computed at once, a slice each."""
    max_events, drop_pages = budget
    bounds = np.cumsum([0, *(len(c) for c in table["rid"].chunks)])
    own, other = _Codes(0), _Codes(_OTHER)

    def positions(start: int, stop: int) -> np.ndarray:
        return np.arange(start, stop) if order is None else order[start:stop]

    def codes(keys: pa.Array, want: np.ndarray) -> np.ndarray:
        out = np.empty(len(keys), np.int64)
        out[want] = own(keys.filter(pa.array(want)))
        out[~want] = other(keys.filter(pa.array(~want)))
        return out

    def rows_of(start: int, stop: int) -> AccountRows:
        at = positions(start, stop)
        want = [_gather(table[c], at, bounds) for c in ("want_src", "want_dst")]
        return AccountRows(
            codes(_strings(table["src"], at, bounds), want[0]),
            codes(_strings(table["dst"], at, bounds), want[1]),
            *(_gather(table[c], at, bounds) for c in ("secs", "amount_paid", "amount_received")),
            *want,
        )  # fmt: skip

    def secs_at(i: int) -> int:
        return int(table["secs"][i if order is None else int(order[i])].as_py())

    held = []
    for start, stop, size, cols in sliced_account_columns(
        rows_of, events if order is None else events[order], secs_at, 0, max_events
    ):
        rid = _gather(table["rid"], positions(start, stop), bounds)
        write("src", rid[cols.src_rows], cols.src)
        write("dst", rid[cols.dst_rows], cols.dst)
        held.append(size)
        drop_pages()
    return held


def _chunks_of(at: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each position's chunk, the positions grouped by chunk, and each chunk's group edges."""
    chunk = np.searchsorted(bounds, at, side="right") - 1
    by_chunk = np.argsort(chunk, kind="stable")
    return chunk, by_chunk, np.searchsorted(chunk[by_chunk], np.arange(len(bounds)))


def _gather(column: pa.ChunkedArray, at: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """``column[at]`` chunk by chunk (``bounds``: the chunks' first rows, then the length):
    Arrow's ``take`` on a chunked column first joins every chunk into one copy."""
    chunk, by_chunk, edges = _chunks_of(at, bounds)
    out: np.ndarray | None = None
    for c in np.unique(chunk):
        mine = by_chunk[edges[c] : edges[c + 1]]
        values = column.chunk(int(c)).to_numpy(zero_copy_only=False)[at[mine] - bounds[c]]
        if out is None:
            out = np.empty(len(at), values.dtype)
        out[mine] = values
    return out if out is not None else column.chunk(0).to_numpy(zero_copy_only=False)[:0]


def _strings(column: pa.ChunkedArray, at: np.ndarray, bounds: np.ndarray) -> pa.Array:
    """``column[at]`` of a string column, as one array, chunk by chunk."""
    chunk, by_chunk, edges = _chunks_of(at, bounds)
    parts = [
        column.chunk(int(c)).take(pa.array(at[by_chunk[edges[c] : edges[c + 1]]] - bounds[c]))
        for c in np.unique(chunk)
    ]
    grouped = pa.concat_arrays(parts) if parts else pa.array([], pa.string())
    back = np.empty(len(at), np.int64)
    back[by_chunk] = np.arange(len(at))
    return grouped.take(pa.array(back))

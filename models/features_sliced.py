"""`models.features_vector.account_columns` in time slices, each from the state the earlier
slices left, so that a set of accounts with millions of events is computed a bounded number of
events at a time, with the same values bit for bit.

A slice is a run of consecutive rows in ``(tick, rid)`` order. What its features need from
before it (`Carry`):

* per account, the running totals at its last event: counts of out, in, new-payee and
  new-payer events (exact integers), and the Kahan state (sum *and* compensation) of pandas'
  grouped cumsum for the out amounts, in amounts, log amounts and squared log amounts (the
  z-score's moments), continued by `kahan_running` with pandas' own arithmetic;
* the history events: every event inside the longest window before the slice's first time,
  and per account its last event at or before that edge (the anchor), each with its time
  and running counts and sums. A window's total is the running value at the event minus the
  running value just before the window's first event, and that event is either in the slice
  or in the history; the anchor also gives since-last and first-seen;
* each (sender, receiver) pair's rows so far, for the pair counts and new counterparties.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from models.features_vector import (
    _LONGEST_WINDOW,
    WINDOWS,
    AccountColumns,
    AccountRows,
    _Events,
    _events,
    _pair_seen,
    _recency,
    _window_starts,
)

COUNTS = ("out", "in", "new_out", "new_in")
SUMS = ("out_amount", "in_amount", "s", "s2")
_HISTORY_SUMS = ("out_amount", "in_amount")  # the windows need these; the z-score's only totals
PAIR_WIDTH = 2**31  # account codes are below this; a pair's key is src * PAIR_WIDTH + dst


@dataclass
class Carry:
    """State after the slices so far: per own account (codes ``0 .. own - 1``, those whose
    features are computed; grown as slices meet new ones), and per pair of any accounts
    (codes below `PAIR_WIDTH`).

    ``count``: (own, 4) running counts (`COUNTS`); ``total``, ``comp``: (own, 4)
    Kahan sums and compensations (`SUMS`); ``history``: events sorted by account then time,
    columns ``account``, ``t`` and the running values of `COUNTS` and `_HISTORY_SUMS`;
    ``pairs``, ``pair_rows``: sorted pair keys (``src * PAIR_WIDTH + dst``) and their rows.
    """

    own: int
    count: np.ndarray
    total: np.ndarray
    comp: np.ndarray
    history: dict[str, np.ndarray]
    pairs: np.ndarray
    pair_rows: np.ndarray

    @classmethod
    def empty(cls, own: int = 0) -> Carry:
        history = {"account": np.zeros(0, np.int64), "t": np.zeros(0, np.int64)}
        history |= {n: np.zeros(0, np.int64) for n in COUNTS}
        history |= {n: np.zeros(0, np.float64) for n in _HISTORY_SUMS}
        zeros = np.zeros(0, np.int64)
        return cls(
            own, np.zeros((own, 4), np.int64), np.zeros((own, 4)), np.zeros((own, 4)), history,
            zeros, zeros.copy(),
        )  # fmt: skip

    def grow(self, own: int) -> None:
        """Room for own account codes below ``own`` (new accounts start at zero)."""
        if own <= self.own:
            return
        size = max(own, 2 * self.own)
        for name in ("count", "total", "comp"):
            old = getattr(self, name)
            new = np.zeros((size, 4), old.dtype)
            new[: self.own] = old
            setattr(self, name, new)
        self.own = size

    @property
    def events(self) -> int:
        """History events held (what a slice adds to its own events)."""
        return len(self.history["t"])


def kahan_running(
    values: np.ndarray, account: np.ndarray, total: np.ndarray, comp: np.ndarray
) -> np.ndarray:
    """pandas' grouped float cumsum of ``values`` by ``account``, started from the Kahan sums
    ``total`` and compensations ``comp`` (updated in place).

    The loop is ``pandas._libs.groupby.group_cumsum``'s, on Python floats (IEEE doubles, as
    its C ones): ``y = val - comp; t = sum + y; comp = t - sum - y; sum = t``. A plain cumsum,
    or the running sum alone, would differ in the last bits.
    """
    sums, comps = total.tolist(), comp.tolist()
    out = []
    for lab, val in zip(account.tolist(), values.tolist(), strict=True):
        y = val - comps[lab]
        t = sums[lab] + y
        comps[lab] = t - sums[lab] - y
        sums[lab] = t
        out.append(t)
    total[:], comp[:] = sums, comps
    return np.array(out, dtype=np.float64)


def _grouped_cumsum(flags: np.ndarray, group_start: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``base`` plus each group's inclusive running count of ``flags`` (exact integers)."""
    running = np.cumsum(flags, dtype=np.int64)
    return base + running - (running[group_start] - flags[group_start])


def _slice_pairs(
    rows: AccountRows, carry: Carry
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Each row's earlier rows of its pair (over every slice), and the pairs' new totals."""
    key = rows.src.astype(np.int64) * PAIR_WIDTH + rows.dst
    seen = _pair_seen(rows)
    if len(carry.pairs):
        at = np.minimum(np.searchsorted(carry.pairs, key), len(carry.pairs) - 1)
        seen = seen + np.where(carry.pairs[at] == key, carry.pair_rows[at], 0)
    keys, rows_per_key = np.unique(np.concatenate([carry.pairs, key]), return_inverse=True)
    weights = np.concatenate([carry.pair_rows, np.ones(len(key), np.int64)])
    return seen, (keys, np.bincount(rows_per_key, weights).astype(np.int64))


@dataclass(frozen=True)
class _Joined:
    """The slice's own accounts' history events followed, per account, by the slice's events
    (sorted by account, then time), with running values; ``at``: the slice's events there."""

    ev: _Events
    count: dict[str, np.ndarray]
    sums: dict[str, np.ndarray]
    starts: dict[str, np.ndarray]
    at: np.ndarray


def _join(
    ev: _Events, carry: Carry, count: dict[str, np.ndarray], sums: dict[str, np.ndarray]
) -> _Joined:
    present = np.zeros(carry.own, bool)
    present[ev.account] = True
    keep = present[carry.history["account"]]
    history = {k: v[keep] for k, v in carry.history.items()}
    account = np.concatenate([history["account"], ev.account])
    order = np.argsort(account, kind="stable")  # history first within an account
    account = account[order]
    h = len(history["t"])
    row = np.concatenate([np.full(h, -1, np.int64), ev.row])[order]
    is_out = np.concatenate([np.zeros(h, bool), ev.is_out])[order]
    t = np.concatenate([history["t"], ev.t])[order]
    first = np.r_[True, account[1:] != account[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(account)), 0))
    joined = _Events(account, row, is_out, t, group_start)
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    return _Joined(
        joined,
        {n: np.concatenate([history[n], count[n]])[order] for n in COUNTS},
        {n: np.concatenate([history[n], sums[n]])[order] for n in _HISTORY_SUMS},
        _window_starts(joined), position[h:],
    )  # fmt: skip


def _windowed(running: np.ndarray, begin: np.ndarray, ev: _Events, at: np.ndarray) -> np.ndarray:
    """Running value at ``at`` less the value just before the window's first event (0 when
    the window starts at the account's first event); ``features_vector._windowed``'s steps."""
    first = begin[at]
    zero = np.zeros((), running.dtype)
    before = np.where(first > ev.group_start[at], running[np.maximum(first - 1, 0)], zero)
    return running[at] - before


def slice_columns(rows: AccountRows, carry: Carry, next_secs: int | None) -> AccountColumns:
    """`account_columns` of the slice ``rows`` (codes below `PAIR_WIDTH`), from and then into
    ``carry``; ``next_secs``: the next slice's first time (None: the last)."""
    ev = _events(rows)
    carry.grow(int(ev.account.max(initial=-1)) + 1)
    seen, (carry.pairs, carry.pair_rows) = _slice_pairs(rows, carry)
    pair_seen = seen[ev.row]
    new_pair = pair_seen == 0
    flags = {"out": ev.is_out, "in": ~ev.is_out,
             "new_out": new_pair & ev.is_out, "new_in": new_pair & ~ev.is_out}  # fmt: skip
    count = {
        n: _grouped_cumsum(flags[n], ev.group_start, carry.count[ev.account, j])
        for j, n in enumerate(COUNTS)
    }
    paid = np.where(ev.is_out, rows.paid[ev.row], 0.0)
    log_amount = np.log1p(paid)
    out = ev.is_out.astype(float)
    values = {"out_amount": paid, "in_amount": np.where(ev.is_out, 0.0, rows.received[ev.row]),
              "s": log_amount * out, "s2": log_amount**2 * out}  # fmt: skip
    sums = {}
    for j, name in enumerate(SUMS):
        total, comp = carry.total[:, j].copy(), carry.comp[:, j].copy()
        sums[name] = kahan_running(values[name], ev.account, total, comp)
        carry.total[:, j], carry.comp[:, j] = total, comp
    last = np.r_[ev.account[1:] != ev.account[:-1], True] if len(ev.account) else np.zeros(0, bool)
    for j, name in enumerate(COUNTS):
        carry.count[ev.account[last], j] = count[name][last]
    joined = _join(ev, carry, count, sums)
    columns = _columns(joined, ev, sums, log_amount, (pair_seen, new_pair))
    if next_secs is not None:
        carry.history = _history(carry, ev, count, sums, next_secs - _LONGEST_WINDOW)
    return columns


def _columns(
    joined: _Joined,
    ev: _Events,
    sums: dict[str, np.ndarray],
    log_amount: np.ndarray,
    pairs: tuple[np.ndarray, np.ndarray],
) -> AccountColumns:
    """The slice's sender and receiver columns, as `features_vector.account_columns` has them."""
    outs, ins = np.flatnonzero(ev.is_out), np.flatnonzero(~ev.is_out)
    jev, count, starts = joined.ev, joined.count, joined.starts
    cols: dict[str, dict[str, np.ndarray]] = {"out": {}, "in": {}}
    recency = _recency(jev)
    every = joined.at
    money = {n: np.maximum(_windowed(joined.sums[n], starts["24h"], jev, every), 0.0)
             for n in _HISTORY_SUMS}  # fmt: skip
    low = np.minimum(money["in_amount"], money["out_amount"])
    high = np.maximum(money["in_amount"], money["out_amount"])
    ratio = np.divide(low, high, out=np.zeros_like(low), where=high > 0)
    for side, mine, prefix in (("out", outs, "src"), ("in", ins, "dst")):
        at = joined.at[mine]
        side_cols = cols[side]
        for name in WINDOWS:
            n = _windowed(count[side], starts[name], jev, at).astype(float)
            total = np.maximum(_windowed(joined.sums[f"{side}_amount"], starts[name], jev, at), 0.0)
            side_cols[f"{prefix}_{side}_count_{name}"] = np.log1p(n) / 4
            side_cols[f"{prefix}_{side}_sum_{name}"] = np.log1p(total) / 10
        new = count[f"new_{side}"]
        ever = np.log1p(new[at].astype(float)) / 4
        recent = np.log1p(_windowed(new, starts["24h"], jev, at).astype(float)) / 3
        fan = ("distinct_payees", "new_payees_24h") if side == "out" else (
            "distinct_payers", "new_payers_24h")  # fmt: skip
        side_cols[f"{prefix}_{fan[0]}"], side_cols[f"{prefix}_{fan[1]}"] = ever, recent
        side_cols |= {f"{prefix}_{k}": v[at] for k, v in recency.items()}
        side_cols[f"{prefix}_pass_through_24h"] = ratio[mine]
    pair_seen, new_pair = pairs
    src = cols["out"]
    src["amount_zscore_src"] = _amount_zscore(
        count["out"][joined.at[outs]], sums["s"][outs], sums["s2"][outs], log_amount[outs]
    )
    src["new_counterparty"] = new_pair[outs].astype(float)
    src["pair_count"] = np.log1p(pair_seen[outs]) / 4
    return AccountColumns(ev.row[outs], src, ev.row[ins], cols["in"])


def _amount_zscore(
    count: np.ndarray, s_total: np.ndarray, s2_total: np.ndarray, log_amount: np.ndarray
) -> np.ndarray:
    """`features_vector._amount_zscore` from the sender's running count and moments."""
    n = count.astype(float) - 1
    s, s2 = s_total - log_amount, s2_total - log_amount**2
    safe_n = np.maximum(n, 1)
    mean = s / safe_n
    var = np.maximum(s2 / safe_n - mean**2, 0.0)
    z = np.where(n > 0, (log_amount - mean) / np.sqrt(var + 0.25), 0.0)
    return np.asarray(np.clip(z, -6, 6) / 3)


def _history(
    carry: Carry,
    ev: _Events,
    count: dict[str, np.ndarray],
    sums: dict[str, np.ndarray],
    edge: int,
) -> dict[str, np.ndarray]:
    """The history the next slice needs: every event after ``edge`` (its first time less the
    longest window) and, per account, the last event at or before it."""
    slice_events = {"account": ev.account, "t": ev.t, **count,
                    **{n: sums[n] for n in _HISTORY_SUMS}}  # fmt: skip
    both = {k: np.concatenate([v, slice_events[k]]) for k, v in carry.history.items()}
    order = np.argsort(both["account"], kind="stable")  # earlier slices first per account
    account, t = both["account"][order], both["t"][order]
    last_of_account = np.r_[account[1:] != account[:-1], True]
    next_inside = np.r_[t[1:] > edge, True]
    keep = (t > edge) | last_of_account | next_inside
    return {k: v[order][keep] for k, v in both.items()}


def sliced_account_columns(
    rows_of: Callable[[int, int], AccountRows],
    events_per_row: np.ndarray,
    secs_at: Callable[[int], int],
    own: int,
    max_events: int,
) -> Iterator[tuple[int, int, int, AccountColumns]]:
    """`account_columns` of a set of accounts' rows, in ``(tick, rid)`` order, slice by slice.

    ``rows_of(start, stop)``: those rows, account codes below `PAIR_WIDTH` (the state is kept
    per code of a wanted end: best numbered from 0, ``own`` of them expected); ``events_per_row``:
    each row's wanted ends (1 or 2); ``secs_at(i)``: row ``i``'s time. Each slice takes as many rows
    as keep its events plus the history's at most ``max_events`` (at least a quarter of it
    when the history alone is larger). Yields ``(start, stop, events computed at once,
    columns)``, the columns' rows relative to ``start``.
    """
    carry = Carry.empty(own)
    ends = np.cumsum(events_per_row, dtype=np.int64)
    start, n = 0, len(events_per_row)
    while start < n:
        before = int(ends[start - 1]) if start else 0
        room = max(max_events - carry.events, max_events // 4)
        stop = max(int(np.searchsorted(ends, before + room, side="right")), start + 1)
        held = carry.events + int(ends[stop - 1]) - before
        next_secs = secs_at(stop) if stop < n else None
        yield start, stop, held, slice_columns(rows_of(start, stop), carry, next_secs)
        start = stop

"""`models.features.compute_features` on plain arrays of one set of accounts: sorts and cumsums.

The out-of-core numpy engine (``bank_node.features_numpy``) hash-partitions a bank's accounts
into buckets and calls `account_columns` once per bucket, and `row_columns` once per chunk of
rows. The arithmetic is `models.features`' own, step by step, so the values are bit-identical:

* rows come in ``(tick, rid)`` order (the stable sort of `compute_features`);
* every row is an "out" event of its sender and an "in" event of its receiver, sorted by
  ``(account, row, out before in)``;
* windowed sums over ``(t - w, t]`` are running sums minus the running sum just before the
  window's first event, found by a binary search on ``account * span + t``;
* sums of amounts are pandas' grouped ``cumsum`` over the same events in the same order (it is
  Kahan-compensated, so a plain ``np.cumsum`` would differ in the last bits); counts are exact
  integer cumsums, which equal pandas' float ones.

An account's features need all of its events, so a bucket holds every row whose sender or
receiver is one of its accounts, and `AccountRows.want_src` / ``want_dst`` say which ends'
accounts belong to the bucket (their features are asked for; the other end's are not).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.features import (
    _NO_HISTORY_MINUTES,
    PAYMENT_FORMATS,
    WINDOWS,
    calendar_amount_columns,
)

SRC_FEATURES: list[str] = [
    *[f"src_out_count_{w}" for w in WINDOWS], *[f"src_out_sum_{w}" for w in WINDOWS],
    "src_since_last", "src_first_seen", "new_counterparty", "pair_count",
    "src_distinct_payees", "src_new_payees_24h", "src_pass_through_24h", "amount_zscore_src",
]  # fmt: skip
DST_FEATURES: list[str] = [
    *[f"dst_in_count_{w}" for w in WINDOWS], *[f"dst_in_sum_{w}" for w in WINDOWS],
    "dst_since_last", "dst_first_seen", "dst_distinct_payers", "dst_new_payers_24h",
    "dst_pass_through_24h",
]  # fmt: skip
FORMAT_FEATURES = ["fmt_" + f.lower().replace(" ", "_") for f in PAYMENT_FORMATS]
_LONGEST_WINDOW = max(WINDOWS.values())


@dataclass(frozen=True)
class AccountRows:
    """Rows in ``(tick, rid)`` order: each end's account code (int64), time and amounts.

    ``want_src[i]``: row ``i``'s sender belongs to this set of accounts, so every row of that
    sender is here and its sender features are computed; ``want_dst`` likewise for receivers.
    """

    src: np.ndarray
    dst: np.ndarray
    secs: np.ndarray
    paid: np.ndarray
    received: np.ndarray
    want_src: np.ndarray
    want_dst: np.ndarray


def row_columns(
    secs: np.ndarray,
    paid: np.ndarray,
    format_code: np.ndarray,
    differ: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Features of the row alone (float64), as `models.features._row_features` computes them.

    ``format_code``: each row's index in `PAYMENT_FORMATS` (-1 for another format);
    ``differ``: the boolean columns ``cross_bank``, ``currency_mismatch``, ``self_transfer``.
    """
    cols = {**calendar_amount_columns(secs, paid), **differ}
    for code, name in enumerate(FORMAT_FEATURES):
        cols[name] = format_code == code
    return {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}


@dataclass(frozen=True)
class _Events:
    """The wanted ends' events sorted by (account, row, out before in)."""

    account: np.ndarray
    row: np.ndarray
    is_out: np.ndarray
    t: np.ndarray
    group_start: np.ndarray


@dataclass(frozen=True)
class AccountColumns:
    """Sender features of the rows ``src_rows``, receiver features of the rows ``dst_rows``.

    The rows are positions in `AccountRows` (in the engine's event order, not sorted); every
    column is float64 and aligned with its side's rows.
    """

    src_rows: np.ndarray
    src: dict[str, np.ndarray]
    dst_rows: np.ndarray
    dst: dict[str, np.ndarray]


def _events(rows: AccountRows) -> _Events:
    out_rows, in_rows = np.flatnonzero(rows.want_src), np.flatnonzero(rows.want_dst)
    row = np.concatenate([out_rows, in_rows])
    is_out = np.repeat([True, False], [len(out_rows), len(in_rows)])
    account = np.concatenate([rows.src[out_rows], rows.dst[in_rows]]).astype(np.int64)
    # One unique integer key sorts like lexsort((~is_out, row, account)) at a fraction of its cost.
    width = 2 * max(len(rows.src), 1)
    order = np.argsort(account * width + 2 * row + ~is_out)
    account, row, is_out = account[order], row[order], is_out[order]
    first = np.r_[True, account[1:] != account[:-1]]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    return _Events(account, row, is_out, rows.secs[row], group_start)


def _pair_seen(rows: AccountRows) -> np.ndarray:
    """Earlier rows of each row's (sender, receiver) pair (pandas' grouped ``cumcount``)."""
    width = int(max(rows.src.max(initial=0), rows.dst.max(initial=0))) + 1
    pair = pd.factorize(rows.src.astype(np.int64) * width + rows.dst)[0].astype(np.int64)
    n = len(pair)
    order = np.argsort(pair * n + np.arange(n))  # unique keys: a fast sort, stable by row
    ordered = pair[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    index = np.arange(n)
    seen = np.empty(n, np.int64)
    seen[order] = index - np.maximum.accumulate(np.where(first, index, 0))
    return seen


def _window_starts(ev: _Events) -> dict[str, np.ndarray]:
    """First event of the same account inside (t - w, t], for every event and window."""
    if len(ev.t) == 0:
        return {name: np.zeros(0, np.int64) for name in WINDOWS}
    t = ev.t - ev.t.min() + _LONGEST_WINDOW  # keeps t - w inside the account's own key range
    key = ev.account * (int(t.max()) + 1) + t
    return {name: np.searchsorted(key, key - w, side="right") for name, w in WINDOWS.items()}


def _counts(values: np.ndarray) -> np.ndarray:
    """Prefix sums with a leading zero: ``c[j] - c[i]`` counts ``values[i:j]`` exactly."""
    return np.concatenate([[0], np.cumsum(values, dtype=np.int64)])


def _in_window(prefix: np.ndarray, begin: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Count of the window ``[begin[i], i]`` of each event ``i`` in ``at``, as floats."""
    return (prefix[at + 1] - prefix[begin[at]]).astype(float)


def _kahan_running(ev: _Events, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-account running sums exactly as pandas' grouped cumsum gives them (one Series at a
    time: a DataFrame would first copy the columns into one block)."""
    return {
        name: pd.Series(values).groupby(ev.account, sort=False).cumsum().to_numpy()
        for name, values in columns.items()
    }


def _windowed(running: np.ndarray, begin: np.ndarray, ev: _Events, at: np.ndarray) -> np.ndarray:
    """`models.features._windowed` at the events ``at`` (ascending), from a running sum."""
    first = begin[at]
    before = np.where(first > ev.group_start[at], running[np.maximum(first - 1, 0)], 0.0)
    return np.maximum(running[at] - before, 0.0)  # no -1e-13 from cancellation


def account_columns(rows: AccountRows) -> AccountColumns:
    """`SRC_FEATURES` of the rows where ``want_src``, `DST_FEATURES` where ``want_dst``.

    Each is computed at the sender's out events (the receiver's in events) in the sorted
    event order, so every lookup walks forward through memory; only the caller's final
    placement by row is a random access.
    """
    ev = _events(rows)
    pair_seen = _pair_seen(rows)[ev.row]
    new_pair = pair_seen == 0
    starts = _window_starts(ev)
    paid = np.where(ev.is_out, rows.paid[ev.row], 0.0)
    log_amount = np.log1p(paid)
    out = ev.is_out.astype(float)
    running = _kahan_running(ev, {
        "out_amount": paid, "in_amount": np.where(ev.is_out, 0.0, rows.received[ev.row]),
        "s": log_amount * out, "s2": log_amount**2 * out,
    })  # fmt: skip
    counts = {
        "out": _counts(ev.is_out), "in": _counts(~ev.is_out),
        "new_out": _counts(new_pair & ev.is_out), "new_in": _counts(new_pair & ~ev.is_out),
    }  # fmt: skip
    outs, ins = np.flatnonzero(ev.is_out), np.flatnonzero(~ev.is_out)
    src = _velocity(ev, starts, running, counts, ("out", outs))
    dst = _velocity(ev, starts, running, counts, ("in", ins))
    src |= _fan(ev, starts, counts, ("out", outs))
    dst |= _fan(ev, starts, counts, ("in", ins))
    recency = _recency(ev)
    ratio = _pass_through(ev, starts["24h"], running)
    src |= {f"src_{k}": v[outs] for k, v in recency.items()}
    dst |= {f"dst_{k}": v[ins] for k, v in recency.items()}
    src["src_pass_through_24h"], dst["dst_pass_through_24h"] = ratio[outs], ratio[ins]
    src["amount_zscore_src"] = _amount_zscore(ev, running, counts["out"], log_amount[outs], outs)
    src["new_counterparty"] = new_pair[outs].astype(float)
    src["pair_count"] = np.log1p(pair_seen[outs]) / 4
    return AccountColumns(ev.row[outs], src, ev.row[ins], dst)


def _velocity(
    ev: _Events,
    starts: dict[str, np.ndarray],
    running: dict[str, np.ndarray],
    counts: dict[str, np.ndarray],
    events: tuple[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Counts and sums of the account's out (in) events in each window, at its out (in)
    events (``events``: the side and those events' positions)."""
    side, at = events
    prefix = "src_out" if side == "out" else "dst_in"
    cols = {}
    for name in WINDOWS:
        n = _in_window(counts[side], starts[name], at)
        total = _windowed(running[f"{side}_amount"], starts[name], ev, at)
        cols[f"{prefix}_count_{name}"] = np.log1p(n) / 4
        cols[f"{prefix}_sum_{name}"] = np.log1p(total) / 10
    return cols


def _fan(
    ev: _Events,
    starts: dict[str, np.ndarray],
    counts: dict[str, np.ndarray],
    events: tuple[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """New counterparties: since the account's first event, and in the last 24h."""
    side, at = events
    new = counts[f"new_{side}"]
    ever = np.log1p(_in_window(new, ev.group_start, at)) / 4
    recent = np.log1p(_in_window(new, starts["24h"], at)) / 3
    if side == "out":
        return {"src_distinct_payees": ever, "src_new_payees_24h": recent}
    return {"dst_distinct_payers": ever, "dst_new_payers_24h": recent}


def _recency(ev: _Events) -> dict[str, np.ndarray]:
    """Minutes since the account's previous row (a self-transfer's two ends are one row)."""
    prev = np.arange(-1, len(ev.account) - 1)
    safe = np.maximum(prev, 0)
    same_row = (prev >= 0) & (ev.row[safe] == ev.row) & (prev >= ev.group_start)
    prev = np.where(same_row, prev - 1, prev)
    seen = prev >= ev.group_start
    minutes = np.where(seen, (ev.t - ev.t[np.maximum(prev, 0)]) / 60, _NO_HISTORY_MINUTES)
    return {
        "since_last": np.log1p(np.minimum(minutes, _NO_HISTORY_MINUTES)) / 10,
        "first_seen": (~seen).astype(float),
    }


def _pass_through(ev: _Events, start: np.ndarray, running: dict[str, np.ndarray]) -> np.ndarray:
    """How evenly money in and out balanced over the last 24h, at every event."""
    every = np.arange(len(ev.account))
    money_in = _windowed(running["in_amount"], start, ev, every)
    money_out = _windowed(running["out_amount"], start, ev, every)
    low, high = np.minimum(money_in, money_out), np.maximum(money_in, money_out)
    return np.divide(low, high, out=np.zeros_like(low), where=high > 0)


def _amount_zscore(
    ev: _Events,
    running: dict[str, np.ndarray],
    prefix: np.ndarray,
    log_amount: np.ndarray,
    at: np.ndarray,
) -> np.ndarray:
    """Log amount (``log_amount``, at the out events ``at``) against the sender's earlier
    payments (0 without earlier payments)."""
    n = _in_window(prefix, ev.group_start, at) - 1
    s, s2 = running["s"][at] - log_amount, running["s2"][at] - log_amount**2
    safe_n = np.maximum(n, 1)
    mean = s / safe_n
    var = np.maximum(s2 / safe_n - mean**2, 0.0)
    z = np.where(n > 0, (log_amount - mean) / np.sqrt(var + 0.25), 0.0)
    return np.asarray(np.clip(z, -6, 6) / 3)

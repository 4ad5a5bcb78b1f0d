"""As-of transaction features, computed identically at every bank from a normalised frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PAYMENT_FORMATS = ["ACH", "Bitcoin", "Cash", "Cheque", "Credit Card", "Reinvestment", "Wire"]
WINDOWS = {"1h": 3_600, "24h": 86_400, "7d": 604_800}  # seconds
REPORTING_THRESHOLD = 10_000.0
_NO_HISTORY_MINUTES = 90 * 24 * 60  # "never seen" reads as a long silence, capped at 90 days

REQUIRED_COLUMNS = [
    "timestamp", "from_bank", "from_account", "to_bank", "to_account", "amount_received",
    "amount_paid", "receiving_currency", "payment_currency", "payment_format",
]  # fmt: skip

FEATURE_NAMES: list[str] = [
    "hour_sin", "hour_cos", "weekday_sin", "weekday_cos", "is_night", "is_weekend",
    "log_amount", "amount_zscore_src", "below_threshold", "round_amount",
    *[f"src_out_count_{w}" for w in WINDOWS], *[f"src_out_sum_{w}" for w in WINDOWS],
    *[f"dst_in_count_{w}" for w in WINDOWS], *[f"dst_in_sum_{w}" for w in WINDOWS],
    "src_since_last", "dst_since_last", "src_first_seen", "dst_first_seen",
    "new_counterparty", "pair_count", "src_distinct_payees", "dst_distinct_payers",
    "src_new_payees_24h", "dst_new_payers_24h", "src_pass_through_24h", "dst_pass_through_24h",
    "cross_bank", "currency_mismatch", "self_transfer",
    *["fmt_" + f.lower().replace(" ", "_") for f in PAYMENT_FORMATS],
]  # fmt: skip


def compute_features(df: pd.DataFrame) -> np.ndarray:
    """Return a float32 matrix (rows in ``df`` order, columns `FEATURE_NAMES`).

    Every feature of a row uses only that row and rows before it in time; rows with the
    same timestamp count as earlier when they come first in ``df``. Appending later rows
    therefore never changes earlier rows' features. All transforms are fixed (log1p,
    clipping, cyclical encodings) so values are roughly unit-scale without any
    bank-specific statistics.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"compute_features needs columns {missing}")
    if len(df) == 0:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    order = np.argsort(df["timestamp"].to_numpy(), kind="stable")
    frame = df.iloc[order].reset_index(drop=True)
    columns = {**_row_features(frame), **_account_features(frame)}
    matrix = np.column_stack([columns[name] for name in FEATURE_NAMES]).astype(np.float32)
    out = np.empty_like(matrix)
    out[order] = matrix
    return out


def _seconds(frame: pd.DataFrame) -> np.ndarray:
    return frame["timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)


def calendar_amount_columns(secs: np.ndarray, paid: np.ndarray) -> dict[str, np.ndarray]:
    """The row features of its time (UTC seconds) and amount paid; one definition for the
    pandas path and the numpy engine (``models.features_vector``)."""
    hour = (secs % 86_400) / 3_600
    weekday = (secs // 86_400 + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    cents = np.round(paid * 100).astype(np.int64)
    day_angle, week_angle = 2 * np.pi * hour / 24, 2 * np.pi * weekday / 7
    return {
        "hour_sin": np.sin(day_angle), "hour_cos": np.cos(day_angle),
        "weekday_sin": np.sin(week_angle), "weekday_cos": np.cos(week_angle),
        "is_night": hour < 6, "is_weekend": weekday >= 5,
        "log_amount": np.log1p(paid) / 10,
        "below_threshold": (paid >= 0.9 * REPORTING_THRESHOLD) & (paid < REPORTING_THRESHOLD),
        "round_amount": (cents > 0) & (cents % 10_000 == 0),
    }  # fmt: skip


def _row_features(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Features of the row alone: calendar, amount shape, banks, currency, format."""
    paid = frame["amount_paid"].to_numpy(dtype=np.float64)
    fmt = frame["payment_format"].to_numpy()
    cols = {
        **calendar_amount_columns(_seconds(frame), paid),
        "cross_bank": _differ(frame, "from_bank", "to_bank"),
        "currency_mismatch": _differ(frame, "payment_currency", "receiving_currency"),
    }
    for name in PAYMENT_FORMATS:
        cols["fmt_" + name.lower().replace(" ", "_")] = fmt == name
    return {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}


def _differ(frame: pd.DataFrame, left: str, right: str) -> np.ndarray:
    return frame[left].astype(str).to_numpy() != frame[right].astype(str).to_numpy()


@dataclass
class _Events:
    """Each row seen from both ends: an "out" event of the sender and an "in" event of the
    receiver, sorted by (account, row, out before in) so an account's history is contiguous."""

    account: np.ndarray
    row: np.ndarray
    is_out: np.ndarray
    t: np.ndarray
    out_amount: np.ndarray
    in_amount: np.ndarray
    new_pair: np.ndarray
    group_start: np.ndarray
    src_index: np.ndarray  # position of each row's out event
    dst_index: np.ndarray  # position of each row's in event


def _events(frame: pd.DataFrame, src: np.ndarray, dst: np.ndarray, new_pair: np.ndarray) -> _Events:
    n = len(frame)
    row = np.tile(np.arange(n), 2)
    is_out = np.repeat([True, False], n)
    account = np.concatenate([src, dst])
    order = np.lexsort((~is_out, row, account))
    account, row, is_out = account[order], row[order], is_out[order]
    secs = _seconds(frame)
    paid = frame["amount_paid"].to_numpy(dtype=np.float64)
    received = frame["amount_received"].to_numpy(dtype=np.float64)
    first = np.r_[True, account[1:] != account[:-1]]
    position = np.empty(2 * n, np.int64)
    position[order] = np.arange(2 * n)
    return _Events(
        account, row, is_out, secs[row], np.where(is_out, paid[row], 0.0),
        np.where(is_out, 0.0, received[row]), new_pair[row],
        np.maximum.accumulate(np.where(first, np.arange(2 * n), 0)), position[:n], position[n:],
    )  # fmt: skip


def _account_features(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Features from each account's own past: velocity, recency, novelty, fan degree."""
    keys = pd.concat([_entity(frame, "from"), _entity(frame, "to")], ignore_index=True)
    codes = pd.factorize(keys)[0]
    src, dst = codes[: len(frame)], codes[len(frame) :]
    pair_seen = (
        pd.Series(src * (codes.max() + 1) + dst).groupby(src * (codes.max() + 1) + dst).cumcount()
    )
    new_pair = pair_seen.to_numpy() == 0
    ev = _events(frame, src, dst, new_pair)
    cols: dict[str, np.ndarray] = {
        "new_counterparty": new_pair.astype(float),
        "pair_count": np.log1p(pair_seen.to_numpy()) / 4,
        "src_distinct_payees": np.log1p(pd.Series(new_pair).groupby(src).cumsum().to_numpy()) / 4,
        "dst_distinct_payers": np.log1p(pd.Series(new_pair).groupby(dst).cumsum().to_numpy()) / 4,
        "self_transfer": (src == dst).astype(float),
    }
    cols |= _velocity(ev)
    cols |= _recency(ev)
    cols |= _pass_through(ev)
    cols["amount_zscore_src"] = _amount_zscore(ev)
    return cols


def _entity(frame: pd.DataFrame, side: str) -> pd.Series:
    # Account ids are only unique within a bank, so the bank is part of the identity.
    return frame[f"{side}_bank"].astype(str) + "\x1f" + frame[f"{side}_account"].astype(str)


def _window_start(ev: _Events, seconds: int) -> np.ndarray:
    """First event of the same account inside (t - seconds, t] for every event."""
    t = ev.t - ev.t.min() + seconds  # keeps t - seconds inside the account's own key range
    span = int(t.max()) + 1
    key = ev.account.astype(np.int64) * span + t
    return np.searchsorted(key, key - seconds, side="right")


def _windowed(values: np.ndarray, start: np.ndarray, ev: _Events) -> np.ndarray:
    """Sum of ``values`` over [start, i] per event, from per-account running sums.

    Running sums restart for every account, so a sum depends only on that account's own
    earlier events and is bit-for-bit unchanged when later rows are appended.
    """
    running = pd.Series(values).groupby(ev.account).cumsum().to_numpy()
    before = np.where(start > ev.group_start, running[np.maximum(start - 1, 0)], 0.0)
    return np.maximum(running - before, 0.0)  # no -1e-13 from cancellation


def _velocity(ev: _Events) -> dict[str, np.ndarray]:
    cols = {}
    for name, seconds in WINDOWS.items():
        start = _window_start(ev, seconds)
        out_n = _windowed(ev.is_out.astype(float), start, ev)[ev.src_index]
        out_sum = _windowed(ev.out_amount, start, ev)[ev.src_index]
        in_n = _windowed((~ev.is_out).astype(float), start, ev)[ev.dst_index]
        in_sum = _windowed(ev.in_amount, start, ev)[ev.dst_index]
        cols[f"src_out_count_{name}"] = np.log1p(out_n) / 4
        cols[f"src_out_sum_{name}"] = np.log1p(out_sum) / 10
        cols[f"dst_in_count_{name}"] = np.log1p(in_n) / 4
        cols[f"dst_in_sum_{name}"] = np.log1p(in_sum) / 10
    start = _window_start(ev, WINDOWS["24h"])
    new_out = _windowed((ev.new_pair & ev.is_out).astype(float), start, ev)[ev.src_index]
    new_in = _windowed((ev.new_pair & ~ev.is_out).astype(float), start, ev)[ev.dst_index]
    cols["src_new_payees_24h"] = np.log1p(new_out) / 3
    cols["dst_new_payers_24h"] = np.log1p(new_in) / 3
    return cols


def _recency(ev: _Events) -> dict[str, np.ndarray]:
    """Minutes since the account's previous row (a self-transfer's two ends are one row)."""
    idx = np.arange(len(ev.account))
    prev = idx - 1
    same_row = (prev >= 0) & (ev.row[np.maximum(prev, 0)] == ev.row) & (prev >= ev.group_start)
    prev = np.where(same_row, prev - 1, prev)
    seen = prev >= ev.group_start
    minutes = np.where(seen, (ev.t - ev.t[np.maximum(prev, 0)]) / 60, _NO_HISTORY_MINUTES)
    value = np.log1p(np.minimum(minutes, _NO_HISTORY_MINUTES)) / 10
    return {
        "src_since_last": value[ev.src_index], "dst_since_last": value[ev.dst_index],
        "src_first_seen": (~seen[ev.src_index]).astype(float),
        "dst_first_seen": (~seen[ev.dst_index]).astype(float),
    }  # fmt: skip


def _pass_through(ev: _Events) -> dict[str, np.ndarray]:
    """How evenly money in and money out balanced over the last 24h: 1 means all passed on."""
    start = _window_start(ev, WINDOWS["24h"])
    money_in = _windowed(ev.in_amount, start, ev)
    money_out = _windowed(ev.out_amount, start, ev)
    low, high = np.minimum(money_in, money_out), np.maximum(money_in, money_out)
    ratio = np.divide(low, high, out=np.zeros_like(low), where=high > 0)
    return {
        "src_pass_through_24h": ratio[ev.src_index],
        "dst_pass_through_24h": ratio[ev.dst_index],
    }


def _amount_zscore(ev: _Events) -> np.ndarray:
    """Log amount against the sender's earlier payments (0 without earlier payments)."""
    log_amount = np.log1p(ev.out_amount)
    out = ev.is_out.astype(float)
    grouped = pd.DataFrame({"n": out, "s": log_amount * out, "s2": log_amount**2 * out}).groupby(
        ev.account
    )
    running = grouped.cumsum().to_numpy()[ev.src_index]
    current = log_amount[ev.src_index]
    n, s, s2 = running[:, 0] - 1, running[:, 1] - current, running[:, 2] - current**2
    safe_n = np.maximum(n, 1)
    mean = s / safe_n
    var = np.maximum(s2 / safe_n - mean**2, 0.0)
    # The 0.25 floor (a factor of ~1.6 in amount) keeps one or two equal payments from
    # turning any different amount into an extreme score.
    z = np.where(n > 0, (current - mean) / np.sqrt(var + 0.25), 0.0)
    return np.clip(z, -6, 6) / 3


# --- card data without account ids (ULB creditcard) -----------------------------------------

CARD_COMPONENTS = [f"v{i}" for i in range(1, 29)]
CARD_FEATURE_NAMES: list[str] = [
    *CARD_COMPONENTS, "log_amount", "hour_sin", "hour_cos",
]  # fmt: skip


def compute_card_features(df: pd.DataFrame) -> np.ndarray:
    """Features for card data that has no account ids (ULB's ``creditcard.csv``).

    ULB publishes only 28 PCA components ``v1``..``v28``, the amount and seconds since the
    first transaction; its rows share no account, so `compute_features`' history features
    would all read "first time seen". This pipeline uses what the data has instead: the
    components (already centred; divided by 4 and clipped to keep them roughly unit-scale
    without per-bank statistics), the log amount and the time of day. Its width differs
    from `FEATURE_NAMES`, so a consortium on card data needs a policy whose ``n_features``
    is ``len(CARD_FEATURE_NAMES)``.
    """
    missing = [c for c in [*CARD_COMPONENTS, "timestamp", "amount_paid"] if c not in df.columns]
    if missing:
        raise ValueError(f"compute_card_features needs columns {missing} (see load_ulb_csv)")
    components = np.clip(df[CARD_COMPONENTS].to_numpy(dtype=np.float64) / 4, -5, 5)
    hour = (_seconds(df) % 86_400) / 3_600
    angle = 2 * np.pi * hour / 24
    log_amount = np.log1p(df["amount_paid"].to_numpy(dtype=np.float64)) / 10
    matrix = np.column_stack([components, log_amount, np.sin(angle), np.cos(angle)])
    return matrix.astype(np.float32).reshape(len(df), len(CARD_FEATURE_NAMES))

"""Frames the feature engines are tested on, and compute_features' values before its cast."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from models.features import FEATURE_NAMES, _account_features, _row_features


def pandas_float64(frame: pd.DataFrame) -> np.ndarray:
    """compute_features' matrix before its float32 cast."""
    order = np.argsort(frame["timestamp"].to_numpy(), kind="stable")
    ordered = frame.iloc[order].reset_index(drop=True)
    columns = {**_row_features(ordered), **_account_features(ordered)}
    matrix = np.column_stack([columns[n] for n in FEATURE_NAMES]).astype(np.float64)
    out = np.empty_like(matrix)
    out[order] = matrix
    return out


def adversarial(seed: int, n: int = 3000) -> pd.DataFrame:
    """Same-second bursts, self-transfers, rows exactly on window edges, shuffled order,
    the same account id at two banks, half-cent amounts and tiny bitcoin amounts."""
    rng = np.random.default_rng(seed)
    edges = np.array([0, 1, 59, 60, 3_599, 3_600, 3_601, 86_399, 86_400, 604_800, 604_801])
    hours = rng.integers(0, 24 * 10, n) * 3_600
    seconds = hours + rng.choice(edges, n) * rng.integers(0, 2, n)
    seconds[rng.random(n) < 0.3] = 7 * 3_600  # a burst of rows in one second
    accounts = np.array(["A", "B", "C", "D", "E"])
    amounts = np.array([100.0, 9_000.0, 9_999.99, 100.005, 1_000.005, 50.125, 0.000001, 3.3])
    src_bank, dst_bank = rng.choice(["1", "2"], n), rng.choice(["1", "2"], n)
    src, dst = rng.choice(accounts, n), rng.choice(accounts, n)
    self_transfer = rng.random(n) < 0.1
    dst[self_transfer], dst_bank[self_transfer] = src[self_transfer], src_bank[self_transfer]
    paid = rng.choice(amounts, n) * rng.choice([1.0, 1.0, 7.3], n)
    return pd.DataFrame({
        "timestamp": pd.Timestamp("2022-09-04 21:00") + pd.to_timedelta(seconds, unit="s"),
        "from_bank": src_bank, "from_account": src, "to_bank": dst_bank, "to_account": dst,
        "amount_received": paid * rng.choice([1.0, 0.95], n), "amount_paid": paid,
        "receiving_currency": rng.choice(["US Dollar", "Euro"], n), "payment_currency": "US Dollar",
        "payment_format": rng.choice(["ACH", "Wire", "Credit Card", "Cash", "Bitcoin"], n),
        "label": 0,
    })  # fmt: skip


def heavy(seed: int, n: int = 4000, shares: tuple[float, ...] = (0.5, 0.2)) -> pd.DataFrame:
    """A bank where one or two accounts are in most rows (``shares`` of the rows each, as
    sender or receiver), over 60 days on a one-hour grid (rows tie on the second, and many
    rows are exactly 1h, 24h or 7d after others), with self-transfers of the busy accounts.
    Rows are in time order, as a bank's file is, except a few."""
    rng = np.random.default_rng(seed)
    hours = np.sort(rng.integers(0, 60 * 24, n))
    seconds = hours * 3_600
    seconds[rng.random(n) < 0.02] += 1  # a few rows one second after a window edge
    light = np.array([f"L{i}" for i in range(300)])
    src, dst = rng.choice(light, n), rng.choice(light, n)
    pick = rng.random(n)
    edges = np.cumsum([0.0, *shares])
    for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
        busy = (pick >= lo) & (pick < hi)
        sends = rng.random(n) < 0.5
        src[busy & sends], dst[busy & ~sends] = f"H{i}", f"H{i}"
        dst[busy & (rng.random(n) < 0.05)] = f"H{i}"  # self-transfers when it also sends
    amounts = np.round(np.exp(rng.normal(5, 2, n)), 2) + rng.choice([0.0, 0.005, 1e-6], n)
    order = np.arange(n)
    swap = rng.integers(0, n - 1, 5)
    order[swap], order[swap + 1] = order[swap + 1], order[swap]
    frame = pd.DataFrame({
        "timestamp": pd.Timestamp("2023-03-01") + pd.to_timedelta(seconds, unit="s"),
        "from_bank": "1", "from_account": src, "to_bank": rng.choice(["1", "2"], n),
        "to_account": dst, "amount_received": amounts * rng.choice([1.0, 0.95], n),
        "amount_paid": amounts, "receiving_currency": "US Dollar", "payment_currency": "US Dollar",
        "payment_format": rng.choice(["ACH", "Wire", "Cash"], n), "label": 0,
    })  # fmt: skip
    busy_dst = frame["to_account"].str.startswith("H")
    frame.loc[busy_dst, "to_bank"] = "1"  # a busy account is one account, at bank 1
    return frame.iloc[order].reset_index(drop=True)

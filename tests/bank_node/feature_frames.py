"""Frames the feature engines are tested on, and compute_features' values before its cast."""

from __future__ import annotations

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

"""Transaction sequences for the online-feature tests, and the batch features they must equal."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bank_node.online_features import Transaction

# The batch pipeline before its float32 cast: the tests compare at 1e-9, which float32
# (7 significant digits) would hide.
from models.features import FEATURE_NAMES, _account_features, _row_features

T0 = int(pd.Timestamp("2022-09-05 00:00").timestamp())  # a Monday
HOUR, DAY, WEEK = 3_600, 86_400, 604_800


def batch_features(frame: pd.DataFrame) -> np.ndarray:
    """`models.features.compute_features` in float64: the same steps without the cast."""
    order = np.argsort(frame["timestamp"].to_numpy(), kind="stable")
    ordered = frame.iloc[order].reset_index(drop=True)
    columns = {**_row_features(ordered), **_account_features(ordered)}
    matrix = np.column_stack([columns[name] for name in FEATURE_NAMES])
    out = np.empty_like(matrix)
    out[order] = matrix
    return out


def frame_of(transactions: list[Transaction]) -> pd.DataFrame:
    rows = [
        {**tx.__dict__, "timestamp": pd.Timestamp(tx.timestamp, unit="s")} for tx in transactions
    ]
    return pd.DataFrame(rows)


def tx(
    t: int,
    src: str,
    dst: str,
    paid: float = 100.0,
    *,
    received: float | None = None,
    fmt: str = "ACH",
    bank: str = "1",
) -> Transaction:
    return Transaction(
        timestamp=t, from_bank=bank, from_account=src, to_bank=bank, to_account=dst,
        amount_received=paid if received is None else received, amount_paid=paid,
        receiving_currency="Euro", payment_currency="Euro", payment_format=fmt,
    )  # fmt: skip


def random_sequence(seed: int, n: int = 600, accounts: int = 25) -> list[Transaction]:
    """Time-sorted transactions over a month: bursts, self-transfers, two banks, huge amounts."""
    rng = np.random.default_rng(seed)
    gaps = rng.choice([0, 0, 1, 60, 3_599, 3_600, 3_601, 4 * HOUR, DAY, 3 * DAY], n)
    times = T0 + np.cumsum(gaps)
    names = [f"acct-{i}" for i in range(accounts)]
    formats = ["ACH", "Wire", "Cash", "Bitcoin", "Cheque", "Credit Card", "Reinvestment"]
    # Amounts over twelve orders of magnitude: windowed sums then differ between naive and
    # compensated running sums, which the online path has to reproduce.
    amounts = np.round(10 ** rng.uniform(-2, 10, n), 2)
    out = []
    for i in range(n):
        src = names[rng.integers(accounts)]
        dst = src if rng.random() < 0.05 else names[rng.integers(accounts)]
        banks = rng.choice(["1", "2"], 2)
        out.append(
            Transaction(
                timestamp=int(times[i]), from_bank=str(banks[0]), from_account=src,
                to_bank=str(banks[1]), to_account=dst,
                amount_received=float(amounts[i] * rng.choice([1.0, 0.95])),
                amount_paid=float(amounts[i]),
                receiving_currency=str(rng.choice(["Euro", "US Dollar"])),
                payment_currency=str(rng.choice(["Euro", "US Dollar"])),
                payment_format=str(rng.choice(formats)),
            )
        )  # fmt: skip
    return out


def boundary_sequence() -> list[Transaction]:
    """Events exactly at 1 h, 24 h and 7 d after earlier ones, bursts and long gaps."""
    seq = [tx(T0, "a", "b", 9_500.0), tx(T0, "a", "b", 10_000.0), tx(T0, "b", "a", 0.0)]
    seq += [tx(T0 + HOUR, "a", "c", 5.0), tx(T0 + HOUR, "a", "a", 7.0, fmt="Cash")]
    seq += [tx(T0 + HOUR + 1, "c", "a", 3.0), tx(T0 + DAY, "a", "b", 1e9)]
    seq += [tx(T0 + DAY, "b", "b", 0.01), tx(T0 + DAY + HOUR, "a", "d", 2.5)]
    seq += [tx(T0 + WEEK, "a", "b", 4.0), tx(T0 + WEEK, "b", "a", 4.0, received=3.0)]
    seq += [tx(T0 + WEEK + 1, "a", "e", 1.0), tx(T0 + WEEK + DAY, "a", "b", 6.0)]
    seq += [tx(T0 + 3 * WEEK, "a", "b", 6.0), tx(T0 + 3 * WEEK, "new", "a", 6.0)]
    # A silence longer than the 90-day cap of "minutes since last", then first-seen accounts.
    seq += [tx(T0 + 200 * DAY, "a", "f", 1.0), tx(T0 + 200 * DAY, "g", "h", 1.0)]
    seq += [tx(T0 + 200 * DAY + WEEK, "a", "a", 2.0), tx(T0 + 200 * DAY + WEEK, "a", "f", 2.0)]
    return seq

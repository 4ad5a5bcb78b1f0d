"""Online as-of features: one transaction at a time, equal to `models.features` over the whole file.

`OnlineFeatures.row` turns one transaction into the row `models.features.compute_features`
gives it when it is computed for the whole file, provided transactions reach it in
timestamp order (equal timestamps count as earlier when they come first, as in the batch).
It keeps, per account, what the batch recomputes from the file each time:

- the account's events (each transaction seen from the sender's and the receiver's end)
  inside the longest window (7 d), each with the running sums after it;
- the running sums themselves, added exactly as pandas' grouped ``cumsum`` adds them
  (Kahan compensation, zeros included): a windowed sum is "running now minus running
  before the window" in both paths, so the two agree to the last bit, not only roughly;
- the running count, sum and sum of squares of log amounts (the amount z-score);
- when it was last seen (recency, first seen), and how many distinct payees and payers it
  has; per counterparty pair, how many transactions the pair had.

The state lives behind the `StateStore` interface: `MemoryStore` here (tests), and
`bank_node.feature_store.SqliteStore` in the service (state survives a restart).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from models.features import FEATURE_NAMES, PAYMENT_FORMATS, REPORTING_THRESHOLD, WINDOWS

LONGEST_WINDOW = max(WINDOWS.values())
# "Never seen" reads as a long silence, capped at 90 days (models.features' own cap).
NO_HISTORY_MINUTES = 90 * 24 * 60
# The windowed quantities, in the order an event carries their running sums.
N_OUT, SUM_OUT, N_IN, SUM_IN, NEW_OUT, NEW_IN = range(6)
QUANTITIES = 6
_ZEROS = (0.0,) * QUANTITIES  # the running sums before an account's first event
# The z-score's running sums: count, sum and sum of squares of the sender's log amounts.
Z_N, Z_S, Z_S2 = range(3)


@dataclass(frozen=True)
class Transaction:
    """One transaction in the normalised frame's terms; ``timestamp`` in seconds (UTC)."""

    timestamp: int
    from_bank: str
    from_account: str
    to_bank: str
    to_account: str
    amount_received: float
    amount_paid: float
    receiving_currency: str
    payment_currency: str
    payment_format: str

    @property
    def src(self) -> str:
        # Account ids are only unique within a bank, so the bank is part of the identity.
        return self.from_bank + "\x1f" + self.from_account

    @property
    def dst(self) -> str:
        return self.to_bank + "\x1f" + self.to_account


@dataclass
class Event:
    """One end of a transaction in an account's history: its time and the running sums after it."""

    t: int
    running: tuple[float, ...]


@dataclass
class AccountState:
    """What the features need of one account's past (see the module docstring)."""

    events: list[Event] = field(default_factory=list)  # inside the longest window, oldest first
    base: tuple[float, ...] | None = None  # running sums at the last pruned event, if any
    sums: list[float] = field(default_factory=lambda: [0.0] * QUANTITIES)
    compensation: list[float] = field(default_factory=lambda: [0.0] * QUANTITIES)
    z_sums: list[float] = field(default_factory=lambda: [0.0] * 3)
    z_compensation: list[float] = field(default_factory=lambda: [0.0] * 3)
    last_seen: int | None = None
    payees: int = 0
    payers: int = 0
    pruned: int = 0  # events dropped so far: the sequence number of events[0]

    def prune(self, now: int) -> None:
        """Drop events no window of a transaction at ``now`` or later can reach."""
        keep = bisect_right(self.events, now - LONGEST_WINDOW, key=lambda e: e.t)
        if keep:
            self.base = self.events[keep - 1].running
            self.events = self.events[keep:]
            self.pruned += keep


class StateStore(Protocol):
    """Where `OnlineFeatures` keeps accounts and pairs; writes become durable on `commit`."""

    def account(self, key: str) -> AccountState: ...

    def put_account(self, key: str, state: AccountState) -> None: ...

    def pair_count(self, src: str, dst: str) -> int: ...

    def put_pair(self, src: str, dst: str, count: int) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def pruned_at(self) -> int | None: ...


class MemoryStore:
    """A `StateStore` in a dict: for tests, and the reference the durable store must match."""

    def __init__(self) -> None:
        self.accounts: dict[str, AccountState] = {}
        self.pairs: dict[tuple[str, str], int] = {}

    def account(self, key: str) -> AccountState:
        return self.accounts.get(key) or AccountState()

    def put_account(self, key: str, state: AccountState) -> None:
        self.accounts[key] = state

    def pair_count(self, src: str, dst: str) -> int:
        return self.pairs.get((src, dst), 0)

    def put_pair(self, src: str, dst: str, count: int) -> None:
        self.pairs[(src, dst)] = count

    def commit(self) -> None:
        """Nothing to flush: every write is already in the dicts."""

    def rollback(self) -> None:
        """Not transactional; the service only uses durable stores."""

    def pruned_at(self) -> int | None:
        return None


def _kahan(total: float, compensation: float, value: float) -> tuple[float, float]:
    """One step of compensated summation, exactly as pandas' grouped ``cumsum`` takes it."""
    y = value - compensation
    t = total + y
    return t, (t - total) - y


def _add_event(
    state: AccountState, t: int, values: tuple[float, ...], z: tuple[float, ...]
) -> None:
    for q, value in enumerate(values):
        state.sums[q], state.compensation[q] = _kahan(state.sums[q], state.compensation[q], value)
    for q, value in enumerate(z):
        state.z_sums[q], state.z_compensation[q] = _kahan(
            state.z_sums[q], state.z_compensation[q], value
        )
    state.events.append(Event(t, tuple(state.sums)))


def _before_window(state: AccountState, seconds: int) -> tuple[float, ...]:
    """The running sums just before the newest event's window (zeros before any event)."""
    newest = state.events[-1]
    start = bisect_right(state.events, newest.t - seconds, key=lambda e: e.t)
    if start > 0:
        return state.events[start - 1].running
    return state.base if state.base is not None else _ZEROS


def _windowed(state: AccountState, before: tuple[float, ...], quantity: int) -> float:
    """The quantity summed over a window, as running now minus running before the window."""
    return max(state.events[-1].running[quantity] - before[quantity], 0.0)


def _since_last(state: AccountState, t: int) -> tuple[float, float]:
    """(log minutes since the account's previous transaction, 1.0 if it had none)."""
    if state.last_seen is None:
        return math.log1p(NO_HISTORY_MINUTES) / 10, 1.0
    minutes = (t - state.last_seen) / 60
    return math.log1p(min(minutes, NO_HISTORY_MINUTES)) / 10, 0.0


def row_features(tx: Transaction) -> dict[str, float]:
    """Features of the transaction alone: the expressions of ``models.features._row_features``."""
    hour = (tx.timestamp % 86_400) / 3_600
    weekday = (tx.timestamp // 86_400 + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    paid = tx.amount_paid
    cents = round(paid * 100)
    day_angle, week_angle = 2 * math.pi * hour / 24, 2 * math.pi * weekday / 7
    cols = {
        "hour_sin": math.sin(day_angle), "hour_cos": math.cos(day_angle),
        "weekday_sin": math.sin(week_angle), "weekday_cos": math.cos(week_angle),
        "is_night": hour < 6, "is_weekend": weekday >= 5,
        "log_amount": math.log1p(paid) / 10,
        "below_threshold": 0.9 * REPORTING_THRESHOLD <= paid < REPORTING_THRESHOLD,
        "round_amount": cents > 0 and cents % 10_000 == 0,
        "cross_bank": tx.from_bank != tx.to_bank,
        "currency_mismatch": tx.payment_currency != tx.receiving_currency,
    }  # fmt: skip
    for name in PAYMENT_FORMATS:
        cols["fmt_" + name.lower().replace(" ", "_")] = tx.payment_format == name
    return {k: float(v) for k, v in cols.items()}


def _velocity(state: AccountState, side: str) -> dict[str, float]:
    count, total = (N_OUT, SUM_OUT) if side == "src" else (N_IN, SUM_IN)
    direction = "out" if side == "src" else "in"
    # One search per window, shared by its quantities (the search is most of the cost).
    before = {name: _before_window(state, seconds) for name, seconds in WINDOWS.items()}
    cols = {}
    for name in WINDOWS:
        n, amount = _windowed(state, before[name], count), _windowed(state, before[name], total)
        cols[f"{side}_{direction}_count_{name}"] = math.log1p(n) / 4
        cols[f"{side}_{direction}_sum_{name}"] = math.log1p(amount) / 10
    day = before["24h"]
    new, label = (NEW_OUT, "payees") if side == "src" else (NEW_IN, "payers")
    cols[f"{side}_new_{label}_24h"] = math.log1p(_windowed(state, day, new)) / 3
    money_in = _windowed(state, day, SUM_IN)
    money_out = _windowed(state, day, SUM_OUT)
    high = max(money_in, money_out)
    cols[f"{side}_pass_through_24h"] = min(money_in, money_out) / high if high > 0 else 0.0
    return cols


def _amount_zscore(state: AccountState, log_amount: float) -> float:
    """Log amount against the sender's earlier payments, after this payment was added."""
    n = state.z_sums[Z_N] - 1
    s = state.z_sums[Z_S] - log_amount
    s2 = state.z_sums[Z_S2] - log_amount * log_amount
    if not n > 0:
        return 0.0
    mean = s / n
    var = max(s2 / n - mean * mean, 0.0)
    # The 0.25 floor: see models.features._amount_zscore.
    z = (log_amount - mean) / math.sqrt(var + 0.25)
    return min(max(z, -6.0), 6.0) / 3


def order_problem(store: StateStore, transactions: list[Transaction]) -> tuple[int, str] | None:
    """(index, why) of the first transaction the store cannot give as-of features, or None.

    ``transactions`` must be in timestamp order. Features of a transaction depend only on
    the history of its two accounts, so it may be later than an unrelated account's newest
    one, but never earlier than its own accounts' last transaction, nor than the last
    pruning (whose dropped events its windows could need).
    """
    pruned = store.pruned_at()
    seen: dict[str, int] = {}
    for index, tx in enumerate(transactions):
        if pruned is not None and tx.timestamp < pruned:
            return index, f"is before {_iso(pruned)}, up to which old history was pruned"
        for key in (tx.src, tx.dst):
            last = seen[key] if key in seen else store.account(key).last_seen
            if last is not None and tx.timestamp < last:
                account = key.replace("\x1f", "/")
                return index, (
                    f"is before {_iso(last)}, the last transaction of account {account}: "
                    "the service keeps each account's history in time order"
                )
            seen[key] = tx.timestamp
    return None


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class OnlineFeatures:
    """Features of transactions fed one at a time, in timestamp order, over a `StateStore`."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def rows(self, transactions: Iterable[Transaction]) -> np.ndarray:
        """One float64 row per transaction (columns `FEATURE_NAMES`), in the order given."""
        out = [self.row(tx) for tx in transactions]
        return np.array(out, dtype=np.float64).reshape(len(out), len(FEATURE_NAMES))

    def row(self, tx: Transaction) -> list[float]:
        """The transaction's features (before the float32 cast), and its state recorded."""
        src_key, dst_key = tx.src, tx.dst
        src = self.store.account(src_key)
        dst = src if dst_key == src_key else self.store.account(dst_key)
        src.prune(tx.timestamp)
        dst.prune(tx.timestamp)
        pair_seen = self.store.pair_count(src_key, dst_key)
        new = float(pair_seen == 0)
        cols = row_features(tx)
        cols["src_since_last"], cols["src_first_seen"] = _since_last(src, tx.timestamp)
        cols["dst_since_last"], cols["dst_first_seen"] = _since_last(dst, tx.timestamp)
        log_amount = math.log1p(tx.amount_paid)
        # The sender's "out" end comes before the receiver's "in" end, as in the batch.
        z = (1.0, log_amount, log_amount * log_amount)
        _add_event(src, tx.timestamp, (1.0, tx.amount_paid, 0.0, 0.0, new, 0.0), z)
        cols |= _velocity(src, "src")
        cols["amount_zscore_src"] = _amount_zscore(src, log_amount)
        in_values = (0.0, 0.0, 1.0, tx.amount_received, 0.0, new)
        _add_event(dst, tx.timestamp, in_values, (0.0, 0.0, 0.0))
        cols |= _velocity(dst, "dst")
        src.payees += int(new)
        dst.payers += int(new)
        cols |= {
            "new_counterparty": new,
            "pair_count": math.log1p(pair_seen) / 4,
            "src_distinct_payees": math.log1p(src.payees) / 4,
            "dst_distinct_payers": math.log1p(dst.payers) / 4,
            "self_transfer": float(src_key == dst_key),
        }
        src.last_seen = dst.last_seen = tx.timestamp
        self.store.put_pair(src_key, dst_key, pair_seen + 1)
        self.store.put_account(src_key, src)
        self.store.put_account(dst_key, dst)
        return [cols[name] for name in FEATURE_NAMES]

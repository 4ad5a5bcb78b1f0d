"""Online features, fed one transaction at a time, equal the batch features of the whole file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from bank_node.feature_store import SqliteStore, StoreError
from bank_node.online_features import MemoryStore, OnlineFeatures, Transaction, order_problem
from models.features import FEATURE_NAMES
from tests.bank_node.online_sequences import (
    DAY,
    T0,
    WEEK,
    batch_features,
    boundary_sequence,
    frame_of,
    random_sequence,
    tx,
)

TOLERANCE = 1e-9


def _assert_equal_to_batch(online: np.ndarray, transactions: list[Transaction]) -> None:
    batch = batch_features(frame_of(transactions))
    diff = np.abs(online - batch)
    worst = np.unravel_index(np.argmax(diff), diff.shape)
    assert diff.max() <= TOLERANCE, (
        f"row {worst[0]}, feature {FEATURE_NAMES[worst[1]]}: online {online[worst]!r}, "
        f"batch {batch[worst]!r}"
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_sequences_give_the_batch_features(seed):
    transactions = random_sequence(seed)
    _assert_equal_to_batch(OnlineFeatures(MemoryStore()).rows(transactions), transactions)


def test_window_boundaries_bursts_self_transfers_and_long_gaps_give_the_batch_features():
    transactions = boundary_sequence()
    _assert_equal_to_batch(OnlineFeatures(MemoryStore()).rows(transactions), transactions)


def test_an_event_exactly_one_window_earlier_is_outside_that_window():
    features = OnlineFeatures(MemoryStore()).rows([tx(T0, "a", "b"), tx(T0 + 3_600, "a", "c")])
    one_hour = FEATURE_NAMES.index("src_out_count_1h")
    one_day = FEATURE_NAMES.index("src_out_count_24h")
    assert features[1, one_hour] == pytest.approx(np.log1p(1) / 4)
    assert features[1, one_day] == pytest.approx(np.log1p(2) / 4)


def test_naive_running_sums_would_miss_the_tolerance_that_compensated_ones_meet():
    """The reason the store keeps Kahan compensations: with a plain running sum a small
    windowed sum after a huge one is off by far more than 1e-9."""
    transactions = [tx(T0, "a", "b", 1e10), tx(T0 + WEEK, "a", "b", 0.37)]
    transactions += [tx(T0 + WEEK + k, "a", "b", 0.01 * k) for k in range(1, 40)]
    online = OnlineFeatures(MemoryStore()).rows(transactions)
    _assert_equal_to_batch(online, transactions)
    naive_sum = 1e10 + 0.37 - 1e10  # what a plain running sum leaves of the last payment
    assert abs(np.log1p(naive_sum) / 10 - np.log1p(0.37) / 10) > TOLERANCE


def test_the_sqlite_store_gives_the_features_of_the_memory_store(tmp_path: Path):
    transactions = random_sequence(7, n=300)
    store = SqliteStore(tmp_path / "accounts.sqlite3", cache_accounts=3)
    online = OnlineFeatures(store)
    rows = []
    for t in transactions:
        rows.append(online.row(t))
        store.commit()
    _assert_equal_to_batch(np.array(rows), transactions)


@pytest.mark.parametrize("sequence", [boundary_sequence(), random_sequence(11, n=400)])
def test_a_restart_in_the_middle_gives_the_same_features(tmp_path: Path, sequence):
    path = tmp_path / "accounts.sqlite3"
    half = len(sequence) // 2
    first = SqliteStore(path)
    rows = list(OnlineFeatures(first).rows(sequence[:half]))
    first.commit()
    first.close()
    second = SqliteStore(path)
    rows += list(OnlineFeatures(second).rows(sequence[half:]))
    _assert_equal_to_batch(np.array(rows), sequence)


def test_pruning_every_account_keeps_the_features_and_drops_old_events(tmp_path: Path):
    transactions = random_sequence(5, n=400)
    store = SqliteStore(tmp_path / "accounts.sqlite3")
    online = OnlineFeatures(store)
    rows = []
    for i, t in enumerate(transactions):
        if i % 50 == 0:
            store.prune(t.timestamp)
        rows.append(online.row(t))
    store.commit()
    _assert_equal_to_batch(np.array(rows), transactions)
    newest = transactions[-1].timestamp
    store.prune(newest)
    oldest = store.db.execute("SELECT min(t) FROM events").fetchone()[0]
    assert oldest > newest - WEEK


def test_a_rolled_back_batch_leaves_no_trace(tmp_path: Path):
    store = SqliteStore(tmp_path / "accounts.sqlite3")
    online = OnlineFeatures(store)
    online.row(tx(T0, "a", "b"))
    store.commit()
    online.row(tx(T0 + 1, "a", "b"))
    store.rollback()
    again = online.row(tx(T0 + 1, "a", "b"))
    # The pair was seen once (the committed transaction), not twice.
    assert again[FEATURE_NAMES.index("pair_count")] == pytest.approx(np.log1p(1) / 4)


def test_a_transaction_before_its_accounts_last_one_is_named():
    store = MemoryStore()
    OnlineFeatures(store).row(tx(T0 + DAY, "a", "b"))
    problem = order_problem(store, [tx(T0 + DAY, "c", "d"), tx(T0, "b", "e")])
    assert problem is not None
    assert problem[0] == 1
    assert "account 1/b" in problem[1]


def test_a_transaction_later_than_its_own_accounts_but_earlier_than_others_is_accepted():
    store = MemoryStore()
    OnlineFeatures(store).row(tx(T0 + DAY, "a", "b"))
    assert order_problem(store, [tx(T0, "c", "d")]) is None


def test_a_transaction_before_the_last_pruning_is_refused(tmp_path: Path):
    store = SqliteStore(tmp_path / "accounts.sqlite3")
    store.prune(T0 + DAY)
    problem = order_problem(store, [tx(T0, "x", "y")])
    assert problem is not None and "pruned" in problem[1]


def test_a_state_file_of_another_feature_set_is_refused(tmp_path: Path):
    path = tmp_path / "accounts.sqlite3"
    SqliteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 'other' WHERE key = 'features'")
    with pytest.raises(StoreError, match="another features"):
        SqliteStore(path)

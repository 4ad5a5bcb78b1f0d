"""models.features_sliced: an account set's features in time slices, with the earlier slices'
state carried, equal the whole set's `account_columns` bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.features import _entity
from models.features_sliced import kahan_running, sliced_account_columns
from models.features_vector import AccountColumns, AccountRows, account_columns
from tests.bank_node.feature_frames import heavy


def ordered_rows(frame: pd.DataFrame) -> tuple[AccountRows, int]:
    """The frame's rows as one account set in (tick, rid) order, and its number of accounts."""
    ordered = frame.iloc[np.argsort(frame["timestamp"].to_numpy(), kind="stable")]
    n = len(ordered)
    codes, uniques = pd.factorize(pd.concat([_entity(ordered, "from"), _entity(ordered, "to")]))
    rng = np.random.default_rng(n)
    want_src = np.ones(n, bool)
    want_dst = rng.random(n) < 0.7  # some rows with only one end in the set, as in a bucket
    secs = ordered["timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)
    rows = AccountRows(
        codes[:n].astype(np.int64), codes[n:].astype(np.int64), secs,
        ordered["amount_paid"].to_numpy(np.float64), ordered["amount_received"].to_numpy(np.float64),
        want_src, want_dst,
    )  # fmt: skip
    return rows, len(uniques)


def rows_between(rows: AccountRows, start: int, stop: int) -> AccountRows:
    return AccountRows(*(getattr(rows, f)[start:stop] for f in AccountRows.__dataclass_fields__))


def by_row(columns: AccountColumns, n: int, offset: int = 0) -> dict[str, np.ndarray]:
    out = {}
    for side_rows, side in ((columns.src_rows, columns.src), (columns.dst_rows, columns.dst)):
        for name, values in side.items():
            out[name] = np.full(n, np.nan)
            out[name][side_rows + offset] = values
    return out


def sliced(rows: AccountRows, accounts: int, max_events: int) -> tuple[dict, list]:
    n = len(rows.src)
    events = rows.want_src.astype(np.int8) + rows.want_dst
    cols: dict[str, np.ndarray] = {}
    plan = []
    for start, _, held, part in sliced_account_columns(
        lambda a, b: rows_between(rows, a, b), events, lambda i: int(rows.secs[i]),
        accounts,
        max_events,
    ):  # fmt: skip
        plan.append((start, held))
        for name, values in by_row(part, n, start).items():
            cols[name] = np.where(np.isnan(values), cols.get(name, values), values)
    return cols, plan


def test_the_kahan_loop_carried_across_a_split_equals_pandas_grouped_cumsum() -> None:
    rng = np.random.default_rng(0)
    values = np.exp(rng.normal(5, 3, 20_000)) * rng.choice([0.0, 1.0], 20_000)
    labels = rng.integers(0, 3, 20_000)
    expected = pd.Series(values).groupby(labels).cumsum().to_numpy()
    total, comp = np.zeros(3), np.zeros(3)
    head = kahan_running(values[:7_000], labels[:7_000], total, comp)
    tail = kahan_running(values[7_000:], labels[7_000:], total, comp)
    np.testing.assert_array_equal(np.concatenate([head, tail]), expected)
    assert (comp != 0).any()  # the compensation is part of the state


@pytest.mark.parametrize("max_events", [60, 200, 900])
@pytest.mark.parametrize("seed", [0, 1])
def test_slices_with_the_carried_state_equal_the_whole_account_set_bit_for_bit(
    seed: int, max_events: int
) -> None:
    rows, accounts = ordered_rows(heavy(seed, n=2_500))
    busiest = np.bincount(np.concatenate([rows.src, rows.dst])).argmax()
    assert ((rows.src == busiest) & (rows.dst == busiest)).sum() > 10  # its self-transfers
    whole = by_row(account_columns(rows), len(rows.src))
    cols, plan = sliced(rows, accounts, max_events)
    assert len(plan) > 2
    for name, values in whole.items():
        np.testing.assert_array_equal(cols[name], values, err_msg=name)


def test_the_plan_keeps_every_slice_and_its_history_within_the_bound() -> None:
    rows, accounts = ordered_rows(heavy(2, n=4_000))
    _, plan = sliced(rows, accounts, 2_000)
    events = rows.want_src.astype(np.int64) + rows.want_dst
    starts = [start for start, _ in plan]
    own = np.diff([*(np.r_[0, np.cumsum(events)][starts]), events.sum()])
    held = np.array([h for _, h in plan])
    assert len(plan) > 3 and held.max() <= 2_000
    assert (held > own).sum() == len(plan) - 1  # every slice after the first has a history
    # Slice edges fall between rows of the same second, and inside the 7-day window.
    assert any(rows.secs[s - 1] == rows.secs[s] for s in starts[1:])
    assert (np.diff(rows.secs[starts]) < 7 * 86_400).sum() >= 3  # slices shorter than a window

"""Counterparty sketches: exact counts, count-min bounds, as-of dates, noise, own share."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.counterparty_sketch import (
    CHANNELS,
    FEATURE_CLIP,
    SKETCH_FEATURE_NAMES,
    AsOf,
    SketchShape,
    account_cells,
    account_ids,
    add_noise,
    build_sketch,
    build_sketches,
    counted,
    dates_per_flow,
    features_as_of,
    flow_sensitivity,
    gaussian_sigma,
    others_sketch,
    query,
    sketch_features,
    sketch_key,
)

KEY = sketch_key(b"k" * 32, "ab" * 32)
DAY = 86_400
WEEK = AsOf(np.datetime64("2022-09-10"), window_seconds=7 * DAY)


def flows(*rows: tuple[str, str, str, str, int, str]) -> pd.DataFrame:
    """Rows of (from_bank, from_account, to_bank, to_account, label, timestamp)."""
    return pd.DataFrame.from_records(
        [
            {
                "from_bank": fb,
                "from_account": fa,
                "to_bank": tb,
                "to_account": ta,
                "label": label,
                "timestamp": pd.Timestamp(ts),
            }
            for fb, fa, tb, ta, label, ts in rows
        ]
    )


def estimates(sketch: np.ndarray, bank: str, account: str, shape: SketchShape) -> np.ndarray:
    cells = account_cells(KEY, account_ids(pd.Series([bank]), pd.Series([account])), shape)
    return query(sketch, cells)[0]


def test_a_wide_sketch_counts_each_account_exactly() -> None:
    shape = SketchShape(depth=4, width=1 << 20)  # no collisions among three accounts
    frame = flows(
        ("1", "a", "2", "m", 1, "2022-09-05"),
        ("1", "b", "2", "m", 0, "2022-09-06"),
        ("3", "c", "2", "m", 1, "2022-09-07"),
        ("2", "m", "1", "a", 1, "2022-09-08"),
    )
    sketch = build_sketch(frame, KEY, shape, WEEK)
    labelled_in, labelled_out, flows_in, flows_out = estimates(sketch, "2", "m", shape)
    assert (labelled_in, labelled_out, flows_in, flows_out) == (2, 1, 3, 1)
    assert list(estimates(sketch, "1", "a", shape)) == [1, 1, 1, 1]


def test_the_same_account_at_another_bank_is_another_counterparty() -> None:
    shape = SketchShape(depth=4, width=1 << 20)
    frame = flows(("1", "a", "2", "m", 1, "2022-09-05"))
    sketch = build_sketch(frame, KEY, shape, WEEK)
    assert list(estimates(sketch, "3", "m", shape)) == [0, 0, 0, 0]


def test_count_min_never_undercounts_and_overcounts_within_its_bound() -> None:
    shape = SketchShape(depth=3, width=16)  # narrow: many collisions
    rng = np.random.default_rng(5)
    n = 400
    frame = flows(
        *[
            (
                "1",
                f"s{rng.integers(50)}",
                "2",
                f"r{rng.integers(60)}",
                int(rng.random() < 0.3),
                "2022-09-05",
            )
            for _ in range(n)
        ]
    )
    sketch = build_sketch(frame, KEY, shape, WEEK)
    truth = frame.groupby("to_account").size()
    errors = []
    for account, count in truth.items():
        estimate = estimates(sketch, "2", str(account), shape)[CHANNELS.index("flows_in")]
        assert estimate >= count
        errors.append(estimate - count)
    # Count-min: P(error > e * n / width) <= exp(-depth); on average far below that bound.
    assert np.mean(errors) <= math.e * n / shape.width


@pytest.mark.parametrize(
    ("when", "counted"),
    [("2022-09-09 23:59:59", 1), ("2022-09-10 00:00:00", 0), ("2022-09-11", 0),
     ("2022-09-03", 1), ("2022-09-02 23:59:59", 0)],
)  # fmt: skip
def test_a_sketch_as_of_a_date_counts_only_rows_in_the_window_before_it(
    when: str, counted: int
) -> None:
    shape = SketchShape(depth=2, width=1 << 16)
    sketch = build_sketch(flows(("1", "a", "2", "m", 1, when)), KEY, shape, WEEK)
    assert float(sketch.sum()) == counted * len(CHANNELS) * shape.depth


def test_a_label_known_only_on_or_after_the_date_is_not_counted_as_labelled() -> None:
    shape = SketchShape(depth=2, width=1 << 16)
    frame = flows(("1", "a", "2", "m", 1, "2022-09-08"), ("1", "b", "2", "m", 1, "2022-09-09"))
    delayed = AsOf(WEEK.date, WEEK.window_seconds, label_delay_seconds=DAY)
    estimate = estimates(build_sketch(frame, KEY, shape, delayed), "2", "m", shape)
    assert estimate[CHANNELS.index("labelled_in")] == 1  # the 09-09 label is known 09-10
    assert estimate[CHANNELS.index("flows_in")] == 2
    frame["label_known_at"] = pd.Timestamp("2022-09-10")
    estimate = estimates(build_sketch(frame, KEY, shape, WEEK), "2", "m", shape)
    assert estimate[CHANNELS.index("labelled_in")] == 0


def test_own_contribution_is_subtracted_exactly() -> None:
    shape = SketchShape(depth=3, width=64)
    mine = add_noise(
        build_sketch(flows(("1", "a", "2", "m", 1, "2022-09-05")), KEY, shape, WEEK), 2.0
    )
    theirs = build_sketch(flows(("3", "c", "2", "m", 1, "2022-09-06")), KEY, shape, WEEK)
    # Exact up to float64 rounding of the sum (the CKKS error comes on top of it at a node).
    np.testing.assert_allclose(others_sketch(mine + theirs, mine), theirs, rtol=0, atol=1e-12)


def test_features_see_only_what_other_members_counted() -> None:
    shape = SketchShape(depth=4, width=1 << 20)
    mine = build_sketch(flows(("1", "a", "2", "m", 1, "2022-09-05")), KEY, shape, WEEK)
    theirs = build_sketch(flows(("3", "c", "2", "m", 1, "2022-09-06")), KEY, shape, WEEK)
    scored = flows(("1", "z", "2", "m", 0, "2022-09-12"))
    features = sketch_features(others_sketch(mine + theirs, mine), KEY, shape, scored)
    assert features[0, SKETCH_FEATURE_NAMES.index("xb_dst_labelled_in")] == pytest.approx(
        math.log1p(1) / math.log1p(FEATURE_CLIP)
    )
    assert features[0, SKETCH_FEATURE_NAMES.index("xb_src_flows_out")] == 0.0


def test_features_are_clipped_into_the_unit_interval() -> None:
    shape = SketchShape(depth=1, width=4)
    others = np.zeros(shape.cells)
    others[:, 0, :] = -50.0
    others[0, 0, :] = 1e9
    scored = flows(("1", "z", "2", "m", 0, "2022-09-12"))
    features = sketch_features(others, KEY, shape, scored)
    assert features.min() == 0.0
    assert features[0, 0] == pytest.approx(1.0)


def test_no_row_dated_on_or_after_a_sketch_date_is_counted_in_the_sketch_it_is_scored_with() -> (
    None
):
    shape = SketchShape(depth=4, width=1 << 20)
    dates = [AsOf(np.datetime64(d), 30 * DAY) for d in ("2022-09-10", "2022-09-20")]
    history = flows(
        ("1", "a", "2", "m", 1, "2022-09-05"),
        ("1", "b", "2", "m", 1, "2022-09-15"),  # labelled after the first date
    )
    others = build_sketches(history, KEY, shape, dates)
    scored = flows(
        ("1", "x", "2", "m", 0, "2022-09-01"),  # before any sketch: zeros
        ("1", "x", "2", "m", 0, "2022-09-10"),  # on the first date: sees the 09-05 label
        ("1", "x", "2", "m", 0, "2022-09-19 23:00"),  # still the first: not 09-15
        ("1", "x", "2", "m", 0, "2022-09-20"),  # the second: both
    )
    column = features_as_of(others, dates, KEY, shape, scored)[
        :, SKETCH_FEATURE_NAMES.index("xb_dst_labelled_in")
    ]
    scale = math.log1p(FEATURE_CLIP)
    np.testing.assert_allclose(
        column,
        [0.0, math.log1p(1) / scale, math.log1p(1) / scale, math.log1p(2) / scale],
        rtol=1e-6,
    )


def test_the_noise_has_the_gaussian_mechanisms_scale() -> None:
    shape = SketchShape(depth=4, width=512)
    sensitivity = flow_sensitivity(shape, n_dates=2)
    assert sensitivity == pytest.approx(math.sqrt(4 * 4 * 2))
    sigma = gaussian_sigma(1.0, 1e-6, sensitivity)
    assert sigma == pytest.approx(sensitivity * math.sqrt(2 * math.log(1.25e6)))
    zeros = np.zeros((2, *shape.cells))
    noise = add_noise(zeros, sigma, np.random.default_rng(1))
    assert zeros.sum() == 0.0  # a new array: the exact sketch is kept
    assert noise.std() == pytest.approx(sigma, rel=0.02)
    assert abs(noise.mean()) < 4 * sigma / math.sqrt(noise.size)


@pytest.mark.parametrize(
    ("days", "window", "most"),
    [(["2022-09-08", "2022-09-15", "2022-09-22", "2022-09-29", "2022-10-06"], 28, 4),
     (["2022-09-08", "2022-09-15", "2022-09-22"], 7, 1),
     (["2022-09-08", "2022-09-15", "2022-09-22"], 8, 2),
     (["2022-09-08", "2022-12-01"], 366, 2), (["2022-09-08"], 1, 1)],
)  # fmt: skip
def test_the_noise_counts_only_the_sketches_one_flow_can_be_in_together(
    days: list[str], window: int, most: int
) -> None:
    dates = [AsOf(np.datetime64(d), window * DAY) for d in days]
    assert dates_per_flow(dates) == most
    # Brute force, one flow every hour of the span: the most sketches any of them is in.
    stamps = np.arange(
        np.datetime64(days[0]) - np.timedelta64(window, "D"), np.datetime64(days[-1]),
        np.timedelta64(1, "h"),
    ).astype("datetime64[s]")  # fmt: skip
    frame = flows(*[("1", "a", "2", "m", 0, str(t)) for t in stamps])
    counts = np.array([counted(frame, d)[0] for d in dates]).sum(axis=0)
    assert counts.max() == most


def test_a_noised_sketch_is_read_by_the_mean_of_its_cells_which_the_noise_does_not_bias() -> None:
    shape = SketchShape(depth=4, width=1 << 16)
    accounts = [str(i) for i in range(500)]
    frame = flows(*[("1", "a", "2", acc, 0, "2022-09-05") for acc in accounts for _ in range(20)])
    noised = add_noise(build_sketch(frame, KEY, shape, WEEK), 40.0, np.random.default_rng(3))
    cells = account_cells(KEY, account_ids(pd.Series(["2"] * 500), pd.Series(accounts)), shape)
    flows_in = CHANNELS.index("flows_in")
    by_mean = query(noised, cells, noised=True)[:, flows_in]
    by_min = query(noised, cells)[:, flows_in]
    assert abs(by_mean.mean() - 20) < 3  # 500 estimates with spread 40 / 2
    assert by_min.mean() < 20 - 30  # the least of 4 noisy cells: about 1.03 sigma low
    exact = query(build_sketch(frame, KEY, shape, WEEK), cells, noised=True)[:, flows_in]
    # Without noise the mean still never undercounts; a few ids share a cell in some row.
    assert exact.min() == 20.0
    assert np.median(exact) == 20.0


def test_two_noise_draws_from_the_operating_system_differ() -> None:
    zeros = np.zeros(64)
    assert not np.array_equal(add_noise(zeros, 1.0), add_noise(zeros, 1.0))


@pytest.mark.parametrize(("epsilon", "delta"), [(0.0, 1e-6), (1.5, 1e-6), (0.5, 0.0)])
def test_the_gaussian_mechanism_refuses_parameters_its_bound_does_not_cover(
    epsilon: float, delta: float
) -> None:
    with pytest.raises(ValueError, match="must be in"):
        gaussian_sigma(epsilon, delta, 1.0)


def test_the_key_depends_on_the_secret_and_the_epoch() -> None:
    assert sketch_key(b"k" * 32, "ab" * 32) != sketch_key(b"j" * 32, "ab" * 32)
    assert sketch_key(b"k" * 32, "ab" * 32) != sketch_key(b"k" * 32, "cd" * 32)
    with pytest.raises(ValueError, match="32 bytes"):
        sketch_key(b"short", "ab" * 32)


@pytest.mark.parametrize(("depth", "width"), [(0, 8), (9, 8), (2, 1)])
def test_a_shape_outside_its_range_is_refused(depth: int, width: int) -> None:
    with pytest.raises(ValueError):
        SketchShape(depth=depth, width=width)


def _random_flows(rng: np.random.Generator, n: int, days: int) -> pd.DataFrame:
    """``n`` flows among a few accounts of banks 1-3 over ``days`` days, a third labelled."""
    start = np.datetime64("2022-09-01T00:00:00")
    stamps = start + rng.integers(0, days * DAY, n).astype("timedelta64[s]")
    return pd.DataFrame({
        "from_bank": rng.choice(["1", "2", "3"], n), "from_account": rng.choice(list("abcd"), n),
        "to_bank": rng.choice(["1", "2", "3"], n), "to_account": rng.choice(list("abcd"), n),
        "label": (rng.random(n) < 0.35).astype(int), "timestamp": pd.to_datetime(stamps),
    })  # fmt: skip


@pytest.mark.parametrize("delay_days", [0, 3, 10])
def test_no_row_reads_a_flow_from_its_own_time_or_a_label_not_yet_known_at_it(
    delay_days: int,
) -> None:
    """Point in time: a row at ``t`` gets the features it would get if the other members'
    data held only the flows before ``t``, labelled only where the label was known before
    ``t`` (``timestamp + label_delay < t``). So no row, in training or in scoring, sees the
    other bank's copy of its own flow, a later flow, or a label of its own period."""
    rng = np.random.default_rng(delay_days)
    shape = SketchShape(depth=2, width=1 << 16)
    dates = [
        AsOf(np.datetime64(d), 14 * DAY, delay_days * DAY)
        for d in ("2022-09-08", "2022-09-15", "2022-09-22", "2022-09-29")
    ]
    theirs = _random_flows(rng, 400, 40)
    others = build_sketches(theirs, KEY, shape, dates)
    rows = _random_flows(rng, 40, 40)
    features = features_as_of(others, dates, KEY, shape, rows)
    for i in range(len(rows)):
        t = rows["timestamp"].iloc[i]
        before = theirs[theirs["timestamp"] < t].copy()
        unknown = before["timestamp"] + pd.Timedelta(days=delay_days) >= t
        before.loc[unknown, "label"] = 0
        truncated = build_sketches(before, KEY, shape, dates)
        expected = features_as_of(truncated, dates, KEY, shape, rows.iloc[[i]])
        np.testing.assert_array_equal(features[i], expected[0])


def test_a_cross_bank_flow_never_counts_towards_its_own_row_through_the_other_banks_copy() -> None:
    shape = SketchShape(depth=4, width=1 << 20)
    dates = [AsOf(np.datetime64(d), 28 * DAY) for d in ("2022-09-08", "2022-09-15")]
    flow = ("1", "a", "2", "m", 1, "2022-09-08 10:00")  # labelled at both banks at once
    at_bank_2 = build_sketches(flows(flow), KEY, shape, dates)
    own_row = features_as_of(at_bank_2, dates, KEY, shape, flows(flow))
    assert not own_row[0, :6].any()
    week_later = flows(("1", "b", "2", "m", 0, "2022-09-15 10:00"))
    assert features_as_of(at_bank_2, dates, KEY, shape, week_later)[0, 0] > 0

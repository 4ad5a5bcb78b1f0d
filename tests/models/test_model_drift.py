"""PSI against fixed reference bins: its values, the empty-bin floor, days, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.drift import (
    EPSILON,
    DailyCounts,
    Reference,
    bin_counts,
    daily_drift,
    psi,
    quantile_edges,
    reference_from,
    window_drift,
)

NAMES = ["amount", "flag"]


def sample(n: int, *, shift: float = 0.0, flag_rate: float = 0.1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(shift, 1.0, n), rng.random(n) < flag_rate])


@pytest.fixture(scope="module")
def reference() -> Reference:
    x = sample(20_000)
    return reference_from(x, 1 / (1 + np.exp(-x[:, 0])), NAMES)


def test_psi_is_the_sum_of_share_differences_times_their_log_ratio():
    expected = (0.75 - 0.25) * math.log(3) + (0.25 - 0.75) * math.log(1 / 3)  # = ln 3
    assert psi(np.array([1, 3]), np.array([3, 1])) == pytest.approx(expected)
    assert psi(np.array([5, 5]), np.array([50, 50])) == 0.0


def test_an_empty_bin_counts_as_the_documented_epsilon_share_not_infinity():
    value = psi(np.array([1, 1]), np.array([0, 10]))
    expected = (EPSILON - 0.5) * math.log(EPSILON / 0.5) + 0.5 * math.log(1 / 0.5)
    assert value == pytest.approx(expected)
    assert math.isfinite(value)


def test_reference_bins_are_deciles_so_each_holds_a_tenth_of_the_reference(reference):
    assert len(reference.edges[0]) == 9
    np.testing.assert_allclose(reference.counts[0] / 20_000, 0.1, atol=0.001)


def test_a_flag_gets_as_many_bins_as_its_quantiles_have_distinct_values(reference):
    assert len(reference.edges[1]) <= 2
    assert reference.counts[1][0] == pytest.approx(18_000, rel=0.02)  # the zeros


def test_a_window_from_the_same_distribution_is_stable_and_a_shifted_one_is_not(reference):
    same = sample(5_000, seed=1)
    stable = window_drift(reference, same, 1 / (1 + np.exp(-same[:, 0])))
    assert stable.rows == 5_000
    assert max(stable.features.values()) < 0.02 and stable.score < 0.02
    moved = sample(5_000, shift=1.0, flag_rate=0.4, seed=2)
    shifted = window_drift(reference, moved, 1 / (1 + np.exp(-moved[:, 0])))
    assert shifted.features["amount"] > 0.25 and shifted.features["flag"] > 0.2
    assert shifted.score > 0.25


def test_values_beyond_the_reference_range_fall_in_the_open_end_bins():
    edges = quantile_edges(np.arange(100.0), 4)
    assert bin_counts(np.array([-1e9, 1e9]), edges).tolist() == [1, 0, 0, 1]


def test_each_utc_day_of_the_window_is_measured_on_its_own(reference):
    x = np.vstack([sample(1_000, seed=3), sample(1_000, shift=2.0, seed=4)])
    stamps = np.repeat(
        np.array(["2024-03-01T23:59", "2024-03-02T00:00"], dtype="datetime64[m]"), 1_000
    )
    days = daily_drift(reference, x, 1 / (1 + np.exp(-x[:, 0])), stamps)
    assert list(days) == ["2024-03-01", "2024-03-02"]
    assert days["2024-03-01"].rows == days["2024-03-02"].rows == 1_000
    assert days["2024-03-01"].score < 0.05 < 0.25 < days["2024-03-02"].score


def test_a_reference_survives_its_json_round_trip(reference):
    again = Reference.from_dict(reference.to_dict())
    x = sample(500, seed=5)
    scores = np.full(500, 0.5)
    assert window_drift(again, x, scores) == window_drift(reference, x, scores)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: window_drift(r, np.zeros((3, 3)), np.zeros(3)), "rows of 2 features"),
        (lambda r: window_drift(r, np.zeros((3, 2)), np.zeros(2)), "2 scores for 3 window rows"),
        (lambda r: window_drift(r, np.zeros((0, 2)), np.zeros(0)), "at least one row"),
        (lambda r: psi(np.ones(3), np.ones(4)), "two 1-D arrays of one length"),
        (lambda r: quantile_edges(np.array([]), 10), "no rows to choose bins from"),
        (lambda r: quantile_edges(np.array([1.0, np.nan])), "not finite"),
        (lambda r: daily_drift(r, np.zeros((2, 2)), np.zeros(2), np.zeros(3)), "3 timestamps"),
    ],
)
def test_bad_input_raises_a_value_error_naming_the_problem(reference, call, message):
    with pytest.raises(ValueError, match=message):
        call(reference)


def test_counting_a_window_in_batches_gives_the_same_psi_as_all_at_once():
    rng = np.random.default_rng(11)
    x, scores = rng.normal(size=(3000, 4)), rng.uniform(size=3000)
    reference = reference_from(x[:1000], scores[:1000], ["a", "b", "c", "d"])
    stamps = np.datetime64("2022-09-01") + rng.integers(0, 3, 2000).astype("timedelta64[D]")
    whole = daily_drift(reference, x[1000:] * 1.3, scores[1000:] ** 2, stamps)
    counts = DailyCounts(reference)
    for start in range(0, 2000, 333):
        part = slice(start, start + 333)
        counts.add((x[1000:] * 1.3)[part], (scores[1000:] ** 2)[part], stamps[part])
    assert counts.drift() == whole and len(whole) == 3


def test_a_counter_refuses_rows_days_and_scores_that_do_not_line_up():
    reference = reference_from(
        np.ones((10, 1)) * np.arange(10)[:, None], np.linspace(0, 1, 10), ["a"]
    )
    with pytest.raises(ValueError, match="2 days and 3 scores for 3 rows"):
        DailyCounts(reference).add(np.zeros((3, 1)), np.zeros(3), np.zeros(2, "datetime64[D]"))

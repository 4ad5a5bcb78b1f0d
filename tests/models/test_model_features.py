"""compute_features: shape, as-of behaviour and hand-checked values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.features import FEATURE_NAMES, compute_features


def frame(*rows: tuple) -> pd.DataFrame:
    """Rows of (minute, from_account, to_account, amount[, format]) at banks 1 -> 2."""
    records = []
    for minute, src, dst, amount, *fmt in rows:
        records.append({
            "timestamp": pd.Timestamp("2022-09-05") + pd.Timedelta(minutes=minute),
            "from_bank": "1", "from_account": src, "to_bank": "1", "to_account": dst,
            "amount_received": float(amount), "amount_paid": float(amount),
            "receiving_currency": "US Dollar", "payment_currency": "US Dollar",
            "payment_format": fmt[0] if fmt else "ACH", "label": 0,
        })  # fmt: skip
    return pd.DataFrame.from_records(records)


def col(features: np.ndarray, name: str) -> np.ndarray:
    return features[:, FEATURE_NAMES.index(name)]


def test_there_is_one_float32_column_per_feature_name(bank_one: pd.DataFrame) -> None:
    features = compute_features(bank_one)
    assert features.dtype == np.float32
    assert features.shape == (len(bank_one), len(FEATURE_NAMES))
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)


def test_features_are_finite_and_roughly_unit_scale(bank_one: pd.DataFrame) -> None:
    features = compute_features(bank_one)
    assert np.isfinite(features).all()
    assert np.abs(features).max() <= 3.0


def test_appending_future_rows_does_not_change_earlier_features(bank_one: pd.DataFrame) -> None:
    cut = bank_one["timestamp"].iloc[len(bank_one) // 2]
    past = bank_one[bank_one["timestamp"] < cut]
    everything = compute_features(bank_one)
    np.testing.assert_array_equal(compute_features(past), everything[: len(past)])


def test_rows_come_back_in_the_order_they_were_given() -> None:
    rows = frame((0, "A", "B", 100), (10, "A", "C", 200), (20, "B", "A", 50), (30, "C", "A", 75))
    shuffled = rows.iloc[[2, 0, 3, 1]]
    np.testing.assert_array_equal(compute_features(shuffled), compute_features(rows)[[2, 0, 3, 1]])


def test_velocity_counts_only_the_window_and_includes_the_row_itself() -> None:
    features = compute_features(frame((0, "A", "B", 10), (30, "A", "B", 10), (120, "A", "C", 10)))
    counts = np.expm1(col(features, "src_out_count_1h") * 4)
    np.testing.assert_allclose(counts, [1, 2, 1], atol=1e-5)
    day_sums = np.expm1(col(features, "src_out_sum_24h") * 10)
    np.testing.assert_allclose(day_sums, [10, 20, 30], rtol=1e-5)


def test_novelty_and_fan_degree_follow_the_counterparties_seen_so_far() -> None:
    features = compute_features(frame((0, "A", "B", 10), (30, "A", "B", 10), (120, "A", "C", 10)))
    assert col(features, "new_counterparty").tolist() == [1, 0, 1]
    distinct = np.expm1(col(features, "src_distinct_payees") * 4)
    np.testing.assert_allclose(distinct, [1, 1, 2], atol=1e-5)
    minutes = np.expm1(col(features, "src_since_last") * 10)
    np.testing.assert_allclose(minutes[1:], [30, 90], rtol=1e-5)
    assert col(features, "src_first_seen").tolist() == [1, 0, 0]


def test_a_mule_forwarding_what_it_received_scores_high_pass_through() -> None:
    features = compute_features(frame((0, "X", "M", 1000), (90, "M", "Y", 950)))
    assert col(features, "src_pass_through_24h")[1] == pytest.approx(0.95, abs=1e-6)
    assert col(features, "dst_pass_through_24h")[0] == 0  # nothing sent on yet, as of then


@pytest.mark.parametrize(
    ("amount", "flag"), [(8999.99, 0), (9000.0, 1), (9999.99, 1), (10000.0, 0)]
)
def test_just_below_threshold_flags_amounts_from_9000_to_9999_99(amount: float, flag: int) -> None:
    assert col(compute_features(frame((0, "A", "B", amount))), "below_threshold")[0] == flag


def test_amount_zscore_is_zero_without_history_and_high_for_an_unusually_large_payment() -> None:
    features = compute_features(frame((0, "A", "B", 50), (10, "A", "B", 60), (20, "A", "C", 9000)))
    z = col(features, "amount_zscore_src")
    assert z[0] == 0
    assert z[2] > 1


def test_payment_format_is_one_hot() -> None:
    features = compute_features(frame((0, "A", "B", 10, "Wire"), (1, "A", "B", 10, "Cheque")))
    one_hot = features[:, [i for i, n in enumerate(FEATURE_NAMES) if n.startswith("fmt_")]]
    assert one_hot.sum(axis=1).tolist() == [1, 1]
    assert col(features, "fmt_wire").tolist() == [1, 0]


def test_an_empty_frame_gives_an_empty_matrix_of_the_right_width() -> None:
    assert compute_features(frame((0, "A", "B", 1)).iloc[:0]).shape == (0, len(FEATURE_NAMES))


def test_a_frame_without_the_required_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="amount_paid"):
        compute_features(frame((0, "A", "B", 10)).drop(columns=["amount_paid"]))

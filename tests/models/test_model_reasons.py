"""explain: integrated-gradients reasons (completeness, ranking, determinism) and their words."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from models.features import (
    CARD_FEATURE_NAMES,
    FEATURE_NAMES,
    compute_card_features,
    compute_features,
)
from models.nets import FraudMLP, build_model
from models.reason_text import describe
from models.reasons import Reason, attributions, explain

N = len(FEATURE_NAMES)
SPEC = {"kind": "mlp", "hidden": [32, 16], "seed": 3}


def logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x.astype(np.float32))).numpy().astype(np.float64)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(200, N)).astype(np.float32)


@pytest.fixture(scope="module")
def trained(rows: np.ndarray) -> FraudMLP:
    """A FraudMLP trained for a few Adam steps on rows whose label follows two features."""
    model = build_model({**SPEC, "lr": 0.01}, N)
    labels = torch.from_numpy(
        ((rows[:, FEATURE_NAMES.index("src_out_count_1h")] + rows[:, 0]) > 1).astype(np.float32)
    )
    optimizer = model.configure_optimizers()
    inputs = torch.from_numpy(rows)
    for _ in range(60):
        optimizer.zero_grad()
        model._loss(model(inputs), labels).backward()
        optimizer.step()
    return model.eval()


def test_attributions_sum_to_the_logit_difference_from_the_baseline(trained, rows):
    scores = attributions(trained, rows)
    difference = logits(trained, rows) - logits(trained, np.zeros((1, N)))
    assert np.abs(difference).max() > 1  # a trained model: the check is not vacuous
    # Completeness holds up to the quadrature error of 64 Gauss-Legendre steps.
    np.testing.assert_allclose(scores.sum(axis=1), difference, atol=0.02 * np.abs(difference).max())


def test_a_baseline_row_gets_no_attribution_at_all(trained):
    np.testing.assert_array_equal(attributions(trained, np.zeros((2, N))), 0.0)


def test_a_model_that_reads_one_feature_ranks_that_feature_first_and_alone():
    model = build_model(SPEC, N)
    only = FEATURE_NAMES.index("src_pass_through_24h")
    layer = model.net[0]
    assert isinstance(layer, torch.nn.Linear)
    with torch.no_grad():
        first = layer.weight
        kept = first[:, only].clone()
        first.zero_()
        first[:, only] = kept
    x = np.zeros((2, N), np.float32)
    x[:, only] = [3.0, -3.0]  # one of the two raises the logit, the other lowers it
    up = int(np.argmax(logits(model, x)))
    reasons = explain(model, x, feature_names=FEATURE_NAMES)
    assert [r.feature for r in reasons[up]] == ["src_pass_through_24h"]
    assert reasons[1 - up] == []  # a feature that lowered the score is no reason


def test_reasons_are_the_largest_positive_attributions_at_most_top_k(trained, rows):
    scores = attributions(trained, rows[:20])
    for k in (1, 3, 5):
        for row_scores, reasons in zip(
            scores, explain(trained, rows[:20], feature_names=FEATURE_NAMES, top_k=k), strict=True
        ):
            expected = [FEATURE_NAMES[j] for j in np.argsort(-row_scores)[:k] if row_scores[j] > 0]
            assert [r.feature for r in reasons] == expected
            assert all(r.contribution > 0 for r in reasons)


def test_explaining_a_batch_gives_what_explaining_each_row_gives_every_time(trained, rows):
    batch = explain(trained, rows[:5], feature_names=FEATURE_NAMES)
    assert explain(trained, rows[:5], feature_names=FEATURE_NAMES) == batch
    for i in range(5):
        alone = explain(trained, rows[i : i + 1], feature_names=FEATURE_NAMES)[0]
        assert [r.feature for r in alone] == [r.feature for r in batch[i]]
        np.testing.assert_allclose(
            [r.contribution for r in alone], [r.contribution for r in batch[i]], rtol=1e-5
        )


def test_explaining_leaves_the_model_in_training_mode_if_it_was(trained, rows):
    trained.train()
    try:
        explain(trained, rows[:2], feature_names=FEATURE_NAMES)
        assert trained.training
    finally:
        trained.eval()


# --- the words ---------------------------------------------------------------------------


def payments(*rows: tuple) -> pd.DataFrame:
    """Rows of (minute, from, to, amount, format) from 2022-09-03 (a Saturday) 02:00; A is
    at bank 1 (whose accounts send), everyone else receives at bank 2."""
    start = pd.Timestamp("2022-09-03 02:00")
    return pd.DataFrame.from_records(
        [
            {
                "timestamp": start + pd.Timedelta(minutes=minute),
                "from_bank": "1",
                "from_account": src,
                "to_bank": "1" if dst == "A" else "2",
                "to_account": dst,
                "amount_received": float(amount),
                "amount_paid": float(amount),
                "receiving_currency": "Euro",
                "payment_currency": "US Dollar",
                "payment_format": fmt,
                "label": 0,
            }
            for minute, src, dst, amount, fmt in rows
        ]
    )


@pytest.fixture(scope="module")
def last_row() -> dict[str, float]:
    """The raw features of A's seventh payment in an hour: 9,500 in cash at 02:30 on a
    Saturday, to X, who had just received 9,600 from W; A had paid X once before."""
    rows = [(0, "W", "A", 20_000, "Wire")]
    rows += [(5 * i, "A", f"B{i}", 100, "ACH") for i in range(1, 5)]
    rows += [(22, "A", "X", 100, "ACH"), (24, "W", "X", 9_600, "Wire")]
    rows += [(30, "A", "X", 9_500, "Cash")]
    features = compute_features(payments(*rows))
    return dict(zip(FEATURE_NAMES, map(float, features[-1]), strict=True))


@pytest.mark.parametrize(
    ("feature", "text"),
    [
        ("src_out_count_1h", "6 payments out of the sender's account in the last hour"),
        ("src_out_sum_24h", "10,000.00 paid out by the sender in the last 24 hours"),
        ("dst_in_count_24h", "3 payments into the receiver's account in the last 24 hours"),
        ("dst_in_sum_7d", "19,200.00 received by the receiver in the last 7 days"),
        ("src_since_last", "8 minutes since the sender's previous transaction"),
        ("dst_since_last", "6 minutes since the receiver's previous transaction"),
        ("src_first_seen", "the sender has earlier transactions on record"),
        ("new_counterparty", "these two accounts have paid each other before"),
        ("pair_count", "1 earlier payment between these two accounts"),
        ("src_distinct_payees", "the sender has paid 5 different accounts so far"),
        ("src_new_payees_24h", "the sender paid 5 new payees in the last 24 hours"),
        ("src_pass_through_24h", "balance to 50% (funds passed straight through)"),
        ("log_amount", "amount 9,500.00"),
        ("amount_zscore_src", "amount 6.0 standard deviations above the sender's usual"),
        ("below_threshold", "amount just below the 10,000 reporting threshold"),
        ("round_amount", "a round amount (a multiple of 100)"),
        ("currency_mismatch", "paid and received in different currencies"),
        ("cross_bank", "paid to an account at another bank"),
        ("fmt_cash", "paid by cash"),
        ("fmt_wire", "not paid by wire"),
        ("hour_sin", "made at 02:30 (time of day)"),
        ("weekday_cos", "made on a Saturday"),
        ("is_night", "made at night (before 06:00)"),
        ("is_weekend", "made at the weekend"),
    ],
)
def test_each_feature_family_reads_as_plain_words_with_the_raw_value(feature, text, last_row):
    assert text in describe(feature, last_row)


def test_an_account_without_history_reads_as_first_seen_and_a_long_silence():
    raw = dict(
        zip(
            FEATURE_NAMES,
            map(float, compute_features(payments((0, "A", "B", 5, "ACH")))[0]),
            strict=True,
        )
    )
    assert describe("src_first_seen", raw) == "the sender's first transaction on record"
    assert describe("src_since_last", raw) == "no earlier transaction of the sender in 90 days"
    assert describe("new_counterparty", raw) == "the first payment between these two accounts"


def test_card_components_get_a_generic_phrase_and_unknown_names_their_value():
    frame = pd.DataFrame({**{f"v{i}": [0.5 * i] for i in range(1, 29)}})
    frame["timestamp"] = pd.Timestamp("2022-09-03 14:00")
    frame["amount_paid"] = 42.0
    raw = dict(zip(CARD_FEATURE_NAMES, map(float, compute_card_features(frame)[0]), strict=True))
    assert describe("v2", raw) == "card pattern V2 at +1.00 (an anonymised component)"
    assert describe("log_amount", raw) == "amount 42.00"
    assert describe("hour_cos", raw) == "made at 14:00 (time of day)"
    assert describe("mystery", {"mystery": 0.25}) == "mystery = 0.25"


def test_reasons_read_the_raw_values_not_the_normalised_ones(trained):
    raw = np.zeros((1, N), np.float32)
    raw[0, FEATURE_NAMES.index("src_out_count_1h")] = np.log1p(7) / 4
    x = np.full((1, N), 0.0, np.float32)
    x[0, FEATURE_NAMES.index("src_out_count_1h")] = 5.0  # far above the (zero) mean
    reasons = explain(trained, x, feature_names=FEATURE_NAMES, raw=raw)[0]
    assert reasons[0] == Reason(
        "src_out_count_1h",
        reasons[0].contribution,
        "7 payments out of the sender's account in the last hour (this one included)",
    )


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x": np.zeros(N)}, r"x must be a 2-D array \(rows, features\), got shape \(44,\)"),
        ({"x": np.zeros((2, N - 1))}, "feature_names has 44 names, but x has 43 feature columns"),
        ({"raw": np.zeros((3, N))}, r"raw has shape \(3, 44\), but x has shape \(2, 44\)"),
        ({"x": np.full((2, N), np.nan)}, "x holds values that are not finite"),
        ({"top_k": 0}, "top_k must be at least 1, got 0"),
    ],
)
def test_bad_input_raises_a_value_error_naming_the_problem(kwargs, message):
    model = build_model(SPEC, N)
    call = {"x": np.zeros((2, N)), "feature_names": FEATURE_NAMES, **kwargs}
    with pytest.raises(ValueError, match=message):
        explain(model, **call)


def test_rows_of_another_width_than_the_model_takes_are_refused():
    model = build_model(SPEC, N)
    names = [f"f{i}" for i in range(N + 2)]
    with pytest.raises(ValueError, match="x has 46 feature columns, but the model takes 44"):
        explain(model, np.zeros((1, N + 2)), feature_names=names)

"""Metrics on examples small enough to check by hand."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from models.metrics import auprc, f1_at, f1_best_threshold, recall_at_budget


def test_auprc_is_average_precision() -> None:
    # Positives at ranks 1 and 3: AP = 0.5 * 1/1 + 0.5 * 2/3.
    assert auprc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.5 + 1 / 3)


def test_recall_at_budget_counts_positives_among_the_top_rows() -> None:
    y = np.zeros(200, int)
    y[[0, 10, 20, 30]] = 1
    scores = np.linspace(1, 0, 200)  # row 0 first, row 1 second, ...
    assert recall_at_budget(y, scores, budget=0.01) == 0.25  # top 2 rows hold 1 of 4


def test_a_half_percent_budget_of_1000_rows_is_exactly_5_alerts() -> None:
    y = np.zeros(1000, int)
    y[:6] = 1
    assert recall_at_budget(y, -np.arange(1000.0), budget=0.005) == pytest.approx(5 / 6)


def test_f1_best_threshold_finds_the_best_cut_and_f1_at_reproduces_it() -> None:
    y = [0, 0, 1, 1, 0]
    scores = [0.1, 0.2, 0.8, 0.9, 0.85]
    threshold, f1 = f1_best_threshold(y, scores)
    assert (threshold, f1) == (0.8, pytest.approx(0.8))  # flag 3 rows, 2 right: P=2/3, R=1
    assert f1_at(y, scores, threshold) == pytest.approx(0.8)
    assert f1_at(y, scores, 0.9) == pytest.approx(2 / 3)


@pytest.mark.parametrize("metric", [auprc, recall_at_budget, lambda y, s: f1_at(y, s, 0.5)])
def test_no_positive_gives_nan_without_error_or_warning(metric) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(metric([0, 0, 0], [0.1, 0.5, 0.9]))


def test_f1_best_threshold_without_positives_is_a_pair_of_nans() -> None:
    threshold, f1 = f1_best_threshold([0, 0], [0.2, 0.3])
    assert math.isnan(threshold) and math.isnan(f1)


def test_labels_and_scores_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="3 values but scores has 2"):
        auprc([0, 1, 0], [0.1, 0.2])

"""The gate's histograms and curve: close to the exact metrics, and a decision that can fail."""

import numpy as np
import pytest

from models.gate import (
    GATE_BINS,
    GATE_VECTOR_LENGTH,
    curve_figures,
    gate_decide,
    gate_vector,
    score_histograms,
)
from models.metrics import auprc, recall_at_budget


def _world(seed: int, separation: float, rows: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(rows) < 0.02
    logits = rng.normal(-4.0, 1.5, rows) + separation * y
    return 1.0 / (1.0 + np.exp(-logits)), y


def test_histograms_count_every_row_once_per_label():
    scores, y = _world(0, 3.0)
    hist = score_histograms(scores, y)
    assert hist.shape == (2, GATE_BINS)
    assert hist[0].sum() == y.sum() and hist[1].sum() == (~y).sum()


def test_binned_auprc_and_recall_are_within_a_hundredth_of_the_exact_ones():
    scores, y = _world(1, 3.0)
    hist = score_histograms(scores, y)
    figures = curve_figures(hist[0], hist[1], alert_rate=0.01)
    assert figures.auprc == pytest.approx(auprc(y, scores), abs=0.01)
    assert figures.recall_at_alert == pytest.approx(recall_at_budget(y, scores, 0.01), abs=0.01)


def test_summed_histograms_give_the_pooled_figures():
    (s1, y1), (s2, y2) = _world(2, 2.5), _world(3, 2.5)
    summed = gate_vector(s1, s1, y1) + gate_vector(s2, s2, y2)
    pooled = score_histograms(np.concatenate([s1, s2]), np.concatenate([y1, y2]))
    outcome = gate_decide(summed, tolerance=0.0, alert_rate=0.01)
    assert outcome.candidate == curve_figures(pooled[0], pooled[1], 0.01)


def test_a_worse_candidate_is_rejected_and_a_close_one_adopted():
    good, y = _world(4, 3.5)
    rng = np.random.default_rng(5)
    useless = rng.random(y.size)
    rejected = gate_decide(gate_vector(useless, good, y), tolerance=0.02, alert_rate=0.01)
    assert not rejected.adopt and rejected.candidate.auprc < rejected.current.auprc - 0.02
    adopted = gate_decide(gate_vector(good, useless, y), tolerance=0.02, alert_rate=0.01)
    assert adopted.adopt


def test_decryption_noise_never_changes_the_decision_or_makes_a_negative_count_count():
    good, y = _world(6, 3.0)
    clean = gate_vector(good, good, y)
    noisy = clean + np.random.default_rng(7).normal(0, 1e-3, clean.size)
    noisy[:4] = -1e-3  # an empty bin decrypted a hair below zero
    assert gate_decide(noisy, 0.0, 0.01) == gate_decide(clean, 0.0, 0.01)


@pytest.mark.parametrize(
    "bad", [np.zeros(GATE_VECTOR_LENGTH - 1), np.full(GATE_VECTOR_LENGTH, np.nan)]
)
def test_a_malformed_gate_vector_is_refused(bad):
    with pytest.raises(ValueError):
        gate_decide(bad, 0.02, 0.01)


def test_no_positive_row_gives_zero_figures_instead_of_a_division_by_zero():
    figures = curve_figures(np.zeros(GATE_BINS), np.ones(GATE_BINS), 0.01)
    assert figures.auprc == 0.0 and figures.recall_at_alert == 0.0 and figures.rows == GATE_BINS

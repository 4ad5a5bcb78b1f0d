"""The evaluation gate's maths: score histograms a bank can sum, and the curve they give.

Each bank scores the candidate and the current model on its own held-out rows and counts
the scores per label into ``GATE_BINS`` fixed bins; the banks sum those counts under
encryption, so every member decrypts the consortium's histograms and nothing else. From
a pair of histograms (positives, negatives) this module computes average precision (the
AUPRC of a step precision-recall curve whose thresholds are the bin edges) and recall when
the top ``alert_rate`` of rows is flagged. The same decrypted vector gives every member the
same figures, so every honest member reaches the same decision (docs/robustness.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# Bins per histogram. Edges are uniform in logit space over [-12, 12] (scores are
# probabilities): fraud scores crowd near 0 and near 1, where uniform bins on [0, 1]
# would merge most rows into one bin.
GATE_BINS = 512
LOGIT_RANGE = 12.0
# The vector a bank sends, in this order: candidate positives, candidate negatives,
# current positives, current negatives (each GATE_BINS counts, lowest score first).
GATE_VECTOR_LENGTH = 4 * GATE_BINS


def bin_edges() -> np.ndarray:
    """The ``GATE_BINS - 1`` inner bin edges, as probabilities, increasing."""
    logits = np.linspace(-LOGIT_RANGE, LOGIT_RANGE, GATE_BINS - 1)
    return 1.0 / (1.0 + np.exp(-logits))


def score_histograms(scores: npt.ArrayLike, labels: npt.ArrayLike) -> np.ndarray:
    """Counts per bin of positive and of negative rows: shape ``(2, GATE_BINS)``."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores for {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise ValueError("a score is NaN or infinite")
    idx = np.searchsorted(bin_edges(), s, side="right")
    pos = np.bincount(idx[y], minlength=GATE_BINS)
    neg = np.bincount(idx[~y], minlength=GATE_BINS)
    return np.stack([pos, neg]).astype(np.float64)


def gate_vector(
    candidate_scores: npt.ArrayLike, current_scores: npt.ArrayLike, labels: npt.ArrayLike
) -> np.ndarray:
    """A bank's gate contribution: the four histograms of ``GATE_VECTOR_LENGTH`` counts."""
    cand = score_histograms(candidate_scores, labels)
    cur = score_histograms(current_scores, labels)
    return np.concatenate([cand[0], cand[1], cur[0], cur[1]])


@dataclass(frozen=True)
class CurveFigures:
    """What one model's consortium histograms say."""

    auprc: float
    recall_at_alert: float
    positives: float
    rows: float


@dataclass(frozen=True)
class GateOutcome:
    """The gate's decision on a candidate and the figures behind it."""

    adopt: bool
    candidate: CurveFigures
    current: CurveFigures
    tolerance: float


def curve_figures(pos: npt.ArrayLike, neg: npt.ArrayLike, alert_rate: float) -> CurveFigures:
    """AUPRC and recall at ``alert_rate`` from per-bin counts (lowest score bin first).

    Counts may be the decrypted, slightly noisy floats of a CKKS sum: negatives are
    clipped to 0. With no positive row the AUPRC and recall are 0.
    """
    p = np.clip(np.asarray(pos, dtype=np.float64), 0.0, None)[::-1]  # highest score first
    n = np.clip(np.asarray(neg, dtype=np.float64), 0.0, None)[::-1]
    total_pos, rows = float(p.sum()), float(p.sum() + n.sum())
    if total_pos <= 0.0:
        return CurveFigures(auprc=0.0, recall_at_alert=0.0, positives=total_pos, rows=rows)
    tp, flagged = np.cumsum(p), np.cumsum(p + n)
    precision = np.divide(tp, flagged, out=np.zeros_like(tp), where=flagged > 0)
    recall_steps = np.diff(np.concatenate([[0.0], tp / total_pos]))
    auprc = float(np.sum(recall_steps * precision))
    return CurveFigures(
        auprc=auprc,
        recall_at_alert=_recall_at(p, n, total_pos, alert_rate * rows),
        positives=total_pos,
        rows=rows,
    )


def _recall_at(p: np.ndarray, n: np.ndarray, total_pos: float, budget: float) -> float:
    """Recall when the ``budget`` highest-scored rows are flagged (a bin split pro rata)."""
    flagged = np.cumsum(p + n)
    k = int(np.searchsorted(flagged, budget, side="left"))
    if k >= p.size:
        return 1.0
    before_rows = float(flagged[k - 1]) if k else 0.0
    before_tp = float(np.sum(p[:k]))
    in_bin = float(p[k] + n[k])
    share = (budget - before_rows) / in_bin if in_bin > 0 else 0.0
    return min(1.0, (before_tp + share * float(p[k])) / total_pos)


def gate_decide(summed: npt.ArrayLike, tolerance: float, alert_rate: float) -> GateOutcome:
    """Adopt the candidate unless its AUPRC is more than ``tolerance`` below the current's.

    ``summed`` is the consortium's ``GATE_VECTOR_LENGTH`` counts (the decrypted sum).
    """
    v = np.asarray(summed, dtype=np.float64).ravel()
    if v.size != GATE_VECTOR_LENGTH:
        raise ValueError(f"a gate vector has {GATE_VECTOR_LENGTH} values, not {v.size}")
    if not np.all(np.isfinite(v)):
        raise ValueError("the gate vector holds NaN or infinite values")
    # Counts are whole rows: rounding removes the CKKS noise (far below 0.5 per bin at the
    # default parameters), so the figures are exactly those of the pooled rows.
    v = np.rint(np.clip(v, 0.0, None))
    b = GATE_BINS
    cand = curve_figures(v[0:b], v[b : 2 * b], alert_rate)
    cur = curve_figures(v[2 * b : 3 * b], v[3 * b : 4 * b], alert_rate)
    return GateOutcome(
        adopt=cand.auprc >= cur.auprc - tolerance,
        candidate=cand,
        current=cur,
        tolerance=tolerance,
    )

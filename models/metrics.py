"""Ranking metrics for rare-positive scoring; each returns NaN when there is no positive."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score, precision_recall_curve


def _arrays(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).astype(int).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values but scores has {s.size}")
    return y, s


def auprc(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the precision-recall curve (average precision); NaN without positives."""
    y, s = _arrays(y_true, scores)
    if not y.any():
        return float("nan")
    return float(average_precision_score(y, s))


def recall_at_budget(y_true: npt.ArrayLike, scores: npt.ArrayLike, budget: float = 0.005) -> float:
    """Share of all positives found among the top ``budget`` fraction of rows by score.

    The alert list holds ``ceil(budget * n)`` rows (at least one); equal scores are
    taken in row order, so the result is deterministic.
    """
    y, s = _arrays(y_true, scores)
    if not y.any():
        return float("nan")
    if not 0 < budget <= 1:
        raise ValueError(f"budget must be in (0, 1], got {budget}")
    k = max(1, math.ceil(round(budget * len(y), 9)))  # round: 0.005 * 1000 must give 5, not 6
    top = np.argsort(-s, kind="stable")[:k]
    return float(y[top].sum() / y.sum())


def f1_at(y_true: npt.ArrayLike, scores: npt.ArrayLike, threshold: float) -> float:
    """F1 when rows scoring ``>= threshold`` are flagged; NaN without positives."""
    y, s = _arrays(y_true, scores)
    if not y.any():
        return float("nan")
    flagged = s >= threshold
    hits = int((flagged & (y == 1)).sum())
    return 2 * hits / (int(flagged.sum()) + int(y.sum()))


def f1_best_threshold(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[float, float]:
    """The threshold (flag ``>=`` it) that maximises F1, and that F1; (NaN, NaN) without positives.

    Choose it on validation data and report `f1_at` on test data with it.
    """
    y, s = _arrays(y_true, scores)
    if not y.any():
        return float("nan"), float("nan")
    precision, recall, thresholds = precision_recall_curve(y, s)
    # The last (precision=1, recall=0) point has no threshold; drop it.
    p, r = precision[:-1], recall[:-1]
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    best = int(np.argmax(f1))
    return float(thresholds[best]), float(f1[best])

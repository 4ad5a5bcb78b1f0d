"""Bounded influence, the honest bank's part: cap its weight, clip its step.

Under encryption nobody can inspect one bank's update, so the bounds are kept by the
honest banks themselves and checked on the aggregate (docs/robustness.md): each honest
bank weighs at most ``max_bank_share`` of the consortium's rows and moves at most
``update_clip_norm`` (L2) from the round's base, so an aggregate of honest updates never
moves further than the clip norm, and any node refuses one that does.
"""

from __future__ import annotations

import math

import numpy as np

# The decrypted aggregate carries CKKS noise (about 1e-6 per weight at the default
# parameters), so the norm check allows that much per weight on top of a relative margin.
NORM_RELATIVE_SLACK = 1e-3
NORM_ABSOLUTE_SLACK_PER_WEIGHT = 1e-5


def update_norm(weights: np.ndarray, base: np.ndarray) -> float:
    """The L2 distance of ``weights`` from ``base``."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    b = np.asarray(base, dtype=np.float64).ravel()
    if w.shape != b.shape:
        raise ValueError(f"{w.size} weights against a base of {b.size}")
    return float(np.linalg.norm(w - b))


def clip_update(weights: np.ndarray, base: np.ndarray, max_norm: float) -> tuple[np.ndarray, float]:
    """``weights`` moved back onto the ball of radius ``max_norm`` around ``base``.

    Returns the clipped weights (the same dtype and shape as ``weights``) and the norm
    before clipping; weights already within the ball come back unchanged.
    """
    if not max_norm > 0:
        raise ValueError(f"the clip norm must be positive, not {max_norm}")
    norm = update_norm(weights, base)
    if norm <= max_norm:
        return weights, norm
    w = np.asarray(weights, dtype=np.float64)
    b = np.asarray(base, dtype=np.float64).reshape(w.shape)
    clipped = b + (w - b) * (max_norm / norm)
    return clipped.astype(np.asarray(weights).dtype, copy=False), norm


def capped_rows(n_rows: int, consortium_rows: float, max_share: float) -> int:
    """The count an honest bank reports: its rows, at most ``max_share`` of the consortium's.

    ``consortium_rows`` is the statistics round's decrypted total, the same at every member.
    Never below 1 row, so a bank always counts.
    """
    if n_rows <= 0:
        raise ValueError("a bank must train on at least one row")
    if not 0.0 < max_share <= 1.0:
        raise ValueError(f"a share cap must be in (0, 1], not {max_share}")
    if not math.isfinite(consortium_rows) or consortium_rows <= 0:
        raise ValueError(f"the consortium's row count must be positive, not {consortium_rows}")
    return max(1, min(int(n_rows), math.floor(max_share * consortium_rows)))


def norm_bound(max_norm: float, n_weights: int) -> float:
    """The largest distance an honest aggregate may show once CKKS noise is allowed for."""
    slack = NORM_ABSOLUTE_SLACK_PER_WEIGHT * math.sqrt(max(1, n_weights))
    return max_norm * (1.0 + NORM_RELATIVE_SLACK) + slack

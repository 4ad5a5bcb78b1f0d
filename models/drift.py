"""Population stability index (PSI) of features and scores against a reference window.

The bins are fixed once, from the reference (the node's training split): the deciles of
each feature and of the score, so every bin holds about a tenth of the reference. A
recent window (a day of scored transactions) is counted into the same bins and compared:

    PSI = sum over bins of (a - e) * ln(a / e)

with ``e`` and ``a`` the reference's and the window's share of rows in a bin. Read it as
0 for the same distribution, < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a large one.

An empty bin would make ``ln`` infinite, so a share below ``EPSILON`` (1e-4, a hundredth
of a decile bin) counts as ``EPSILON``: one bin that empties completely then adds at most
about ``0.1 * ln(0.1 / 1e-4) ~ 0.7``, a large but finite shift. Shares are not
renormalised after the floor; the error it introduces is below ``EPSILON`` per bin.

A feature with few distinct values (a flag) gets fewer bins: quantiles that coincide
are one edge. Everything here is pure: arrays in, arrays and numbers out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

N_BINS = 10
EPSILON = 1e-4


def quantile_edges(reference: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """The inner bin edges of a 1-D reference sample: its distinct (1/n ... (n-1)/n) quantiles,
    each moved up halfway to the next distinct reference value.

    Bin ``i`` holds the values in ``(edge[i-1], edge[i]]``; the first and last bins are open.
    Moving an edge into the gap above it leaves every reference row in its bin, but keeps a
    value that the node computes one rounding step differently at scoring time (DuckDB's
    features against pandas', ``docs/scale.md``) from crossing an edge that sat exactly on
    it: for a count or a flag that would move a whole value's rows to the next bin.
    """
    values = _finite_1d(reference, "reference")
    if n_bins < 2:
        raise ValueError(f"n_bins must be at least 2, got {n_bins}")
    if values.size == 0:
        raise ValueError("the reference window has no rows to choose bins from")
    edges = np.unique(np.quantile(values, np.arange(1, n_bins) / n_bins))
    distinct = np.unique(values)
    above = np.searchsorted(distinct, edges, side="right")  # first value above each edge
    has_above = above < distinct.size
    snapped = np.where(
        has_above, (edges + distinct[np.minimum(above, distinct.size - 1)]) / 2, edges
    )
    return np.unique(snapped)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """How many of ``values`` fall in each of the ``len(edges) + 1`` bins (int64)."""
    index = np.searchsorted(edges, _finite_1d(values, "values"), side="left")
    return np.bincount(index, minlength=len(edges) + 1).astype(np.int64)


def psi(reference_counts: np.ndarray, window_counts: np.ndarray) -> float:
    """PSI of a window's bin counts against the reference's (the same bins)."""
    expected, actual = np.asarray(reference_counts), np.asarray(window_counts)
    if expected.shape != actual.shape or expected.ndim != 1:
        raise ValueError(
            f"bin counts must be two 1-D arrays of one length, got {expected.shape} "
            f"and {actual.shape}"
        )
    if expected.sum() <= 0 or actual.sum() <= 0:
        raise ValueError("PSI needs at least one row in the reference and in the window")
    e = np.maximum(expected / expected.sum(), EPSILON)
    a = np.maximum(actual / actual.sum(), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class Reference:
    """The reference window as bins: per feature and for the score, edges and counts."""

    features: list[str]
    edges: list[np.ndarray]
    counts: list[np.ndarray]
    score_edges: np.ndarray
    score_counts: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "edges": [e.tolist() for e in self.edges],
            "counts": [c.tolist() for c in self.counts],
            "score_edges": self.score_edges.tolist(),
            "score_counts": self.score_counts.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        reference = cls(
            list(data["features"]),
            [np.asarray(e, np.float64) for e in data["edges"]],
            [np.asarray(c, np.int64) for c in data["counts"]],
            np.asarray(data["score_edges"], np.float64),
            np.asarray(data["score_counts"], np.int64),
        )
        if not len(reference.features) == len(reference.edges) == len(reference.counts):
            raise ValueError("a drift reference needs edges and counts for every feature")
        return reference


def reference_from(
    x: np.ndarray, scores: np.ndarray, features: Sequence[str], n_bins: int = N_BINS
) -> Reference:
    """Bins and counts of the reference window's feature matrix ``x`` and its ``scores``."""
    matrix = _matrix(x, features)
    if len(scores) != matrix.shape[0]:
        raise ValueError(f"{len(scores)} scores for {matrix.shape[0]} reference rows")
    edges = [quantile_edges(matrix[:, j], n_bins) for j in range(matrix.shape[1])]
    score_edges = quantile_edges(scores, n_bins)
    return Reference(
        list(features),
        edges,
        [bin_counts(matrix[:, j], e) for j, e in enumerate(edges)],
        score_edges,
        bin_counts(scores, score_edges),
    )


@dataclass(frozen=True)
class WindowDrift:
    """PSI of one window against the reference: per feature, for the score, and its size."""

    rows: int
    features: dict[str, float]
    score: float


def window_drift(reference: Reference, x: np.ndarray, scores: np.ndarray) -> WindowDrift:
    """PSI of a window (rows ``x`` and their ``scores``) against ``reference``."""
    matrix = _matrix(x, reference.features)
    if len(scores) != matrix.shape[0]:
        raise ValueError(f"{len(scores)} scores for {matrix.shape[0]} window rows")
    per_feature = {
        name: psi(reference.counts[j], bin_counts(matrix[:, j], reference.edges[j]))
        for j, name in enumerate(reference.features)
    }
    score = psi(reference.score_counts, bin_counts(scores, reference.score_edges))
    return WindowDrift(int(matrix.shape[0]), per_feature, score)


def daily_drift(
    reference: Reference, x: np.ndarray, scores: np.ndarray, timestamps: np.ndarray
) -> dict[str, WindowDrift]:
    """`window_drift` for each calendar day (UTC) of ``timestamps``, keyed "YYYY-MM-DD"."""
    days = np.asarray(timestamps).astype("datetime64[D]")
    if days.shape != (len(scores),):
        raise ValueError(f"{days.size} timestamps for {len(scores)} scored rows")
    counts = DailyCounts(reference)
    counts.add(x, scores, days)
    return counts.drift()


class DailyCounts:
    """Per-day bin counts of scored rows, added batch by batch; the days' PSI at the end.

    Counting is additive, so a file scored in batches (``bank_node.score_stream``) gives the
    same PSI as the same rows at once (`daily_drift`).
    """

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        self._features: dict[str, list[np.ndarray]] = {}
        self._scores: dict[str, np.ndarray] = {}

    def add(self, x: np.ndarray, scores: np.ndarray, days: np.ndarray) -> None:
        """Count rows ``x`` with their ``scores`` under their calendar ``days``."""
        matrix = _matrix(x, self.reference.features)
        days = np.asarray(days).astype("datetime64[D]")
        scores = np.asarray(scores)
        if not len(scores) == matrix.shape[0] == days.size:
            raise ValueError(
                f"{days.size} days and {len(scores)} scores for {matrix.shape[0]} rows"
            )
        for day in np.unique(days):
            rows = days == day
            key = str(day)
            features = [
                bin_counts(matrix[rows, j], edges) for j, edges in enumerate(self.reference.edges)
            ]
            score = bin_counts(scores[rows], self.reference.score_edges)
            if key in self._scores:
                features = [a + b for a, b in zip(self._features[key], features, strict=True)]
                score = self._scores[key] + score
            self._features[key], self._scores[key] = features, score

    def drift(self) -> dict[str, WindowDrift]:
        """Each counted day's PSI against the reference, keyed "YYYY-MM-DD"."""
        ref = self.reference
        return {
            day: WindowDrift(
                int(self._scores[day].sum()),
                {
                    name: psi(ref.counts[j], self._features[day][j])
                    for j, name in enumerate(ref.features)
                },
                psi(ref.score_counts, self._scores[day]),
            )
            for day in sorted(self._scores)
        }


def _finite_1d(values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} holds values that are not finite")
    return array


def _matrix(x: np.ndarray, features: Sequence[str]) -> np.ndarray:
    matrix = np.asarray(x, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(features):
        raise ValueError(
            f"expected rows of {len(features)} features, got an array of shape {matrix.shape}"
        )
    return matrix

"""Why the model scored a row as it did: integrated gradients (Captum), in plain words.

Integrated gradients attribute a row's logit, relative to a baseline row, to its
features: the attributions of a row sum to ``logit(x) - logit(baseline)`` (completeness),
up to the error of the path integral's quadrature (``N_STEPS`` Gauss-Legendre points).

The baseline is the all-zero *normalised* row. Under consortium normalisation that is
the consortium's training mean, so a reason reads "this row differs from the average
transaction in this way, and that pushed its score up". Without normalisation it is the
all-zero feature row (no history, no flags), still a fixed reference every bank shares.

Reasons are about the model, not about the customer: they say which inputs moved this
model's score, not that anything unlawful happened (docs/alerts-and-reasons.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients

from models.reason_text import describe

N_STEPS = 64
# Rows explained per Captum call: each expands to N_STEPS rows, so memory stays bounded.
_CHUNK_ROWS = 256


@dataclass(frozen=True)
class Reason:
    """One feature's part in a row's score: its attribution and a phrase an analyst reads."""

    feature: str
    contribution: float  # in logit units: how far this feature moved the score up
    text: str


def attributions(
    model: torch.nn.Module, x: np.ndarray, *, baseline: np.ndarray | None = None
) -> np.ndarray:
    """Integrated-gradients attributions (float64, shape of ``x``) of each row's logit.

    ``model`` maps a float32 batch ``(n, features)`` to ``(n,)`` logits, as every model
    in `models.nets` does; ``baseline`` is one row (default: all zeros). Deterministic:
    no sampling, eval mode, no change to the model or to torch's RNG.
    """
    rows = _matrix(x, "x")
    _check_width(model, rows)
    base = np.zeros(rows.shape[1], np.float32) if baseline is None else _row(baseline, rows)
    if rows.shape[0] == 0:
        return np.zeros(rows.shape, np.float64)
    ig = IntegratedGradients(model)
    was_training = model.training
    model.eval()
    try:
        parts = [
            _integrate(ig, rows[i : i + _CHUNK_ROWS], base)
            for i in range(0, rows.shape[0], _CHUNK_ROWS)
        ]
    finally:
        model.train(was_training)
    return np.concatenate(parts).astype(np.float64)


def _integrate(ig: IntegratedGradients, rows: np.ndarray, base: np.ndarray) -> np.ndarray:
    inputs = torch.from_numpy(np.ascontiguousarray(rows))
    baselines = torch.from_numpy(np.broadcast_to(base, rows.shape).copy())
    result = ig.attribute(inputs, baselines=baselines, n_steps=N_STEPS, method="gausslegendre")
    return np.asarray(result.detach().numpy())


def explain(
    model: torch.nn.Module,
    x: np.ndarray,
    *,
    feature_names: Sequence[str],
    raw: np.ndarray | None = None,
    top_k: int = 3,
) -> list[list[Reason]]:
    """The ``top_k`` reasons of each row of ``x``: the features that pushed its score up most.

    Parameters
    ----------
    model : a model of `models.nets` (or any module mapping ``(n, f)`` to ``(n,)`` logits).
    x : the rows as the model sees them (normalised when the model's policy normalises).
    feature_names : the name of each column of ``x`` (``FEATURE_NAMES`` or
        ``CARD_FEATURE_NAMES``); it picks each reason's phrase.
    raw : the same rows before normalisation (`compute_features` output), for the phrases'
        values; None when ``x`` was not normalised (then ``x`` is the raw value).
    top_k : at most this many reasons per row.

    Only features with a positive attribution are reasons (one that lowered the score
    does not explain an alert), so a row may have fewer than ``top_k``. Ties keep the
    column order, so the result is deterministic.
    """
    rows = _matrix(x, "x")
    names = _names(feature_names, rows)
    values = rows if raw is None else _same_shape(raw, rows)
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    scores = attributions(model, rows)
    return [_row_reasons(names, values[i], scores[i], top_k) for i in range(rows.shape[0])]


def _row_reasons(
    names: Sequence[str], raw_row: np.ndarray, scores: np.ndarray, top_k: int
) -> list[Reason]:
    order = np.argsort(-scores, kind="stable")[:top_k]
    by_name = dict(zip(names, (float(v) for v in raw_row), strict=True))
    return [
        Reason(names[j], float(scores[j]), describe(names[j], by_name))
        for j in order
        if scores[j] > 0
    ]


def _matrix(x: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(x)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array (rows, features), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} holds values that are not finite (NaN or infinity)")
    return array.astype(np.float32)


def _check_width(model: torch.nn.Module, rows: np.ndarray) -> None:
    hparams = getattr(model, "hparams", None)
    expected = hparams.get("n_features") if hparams is not None else None
    if expected is not None and int(expected) != rows.shape[1]:
        raise ValueError(f"x has {rows.shape[1]} feature columns, but the model takes {expected}")


def _row(baseline: np.ndarray, rows: np.ndarray) -> np.ndarray:
    base = np.asarray(baseline, dtype=np.float32)
    if base.shape != (rows.shape[1],):
        raise ValueError(
            f"baseline must be one row of {rows.shape[1]} features, got shape {base.shape}"
        )
    return base


def _same_shape(raw: np.ndarray, rows: np.ndarray) -> np.ndarray:
    values = np.asarray(raw, dtype=np.float64)
    if values.shape != rows.shape:
        raise ValueError(f"raw has shape {values.shape}, but x has shape {rows.shape}")
    return values


def _names(feature_names: Sequence[str], rows: np.ndarray) -> list[str]:
    names = list(feature_names)
    if len(names) != rows.shape[1]:
        raise ValueError(
            f"feature_names has {len(names)} names, but x has {rows.shape[1]} feature columns"
        )
    return names

"""The reasons column of scored transactions: plain-words reasons for the alerting rows only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.counterparty_sketch import SKETCH_FEATURE_NAMES
from models.feature_sets import FEATURE_SETS
from models.reasons import Reason, explain

DEFAULT_REASONS = 3
SEPARATOR = "; "


def feature_names_for(width: int) -> list[str]:
    """The feature names of a model ``width`` columns wide: those of the registered feature
    set of that width (``models.feature_sets``: each has its own), or ``feature_<i>`` for a
    width none has (a policy's own features still get a name)."""
    for spec in FEATURE_SETS.values():
        if spec.n_features == width:
            return list(spec.feature_names)
    return [f"feature_{i}" for i in range(width)]


def policy_feature_names(feature_set_name: str, sketched: bool) -> list[str]:
    """A policy's columns by name: its feature set's, then the cross-bank ones if it reads
    them (a width alone is ambiguous: ``aml-v1`` plus six is ``paysim-v1``'s 50)."""
    names = list(FEATURE_SETS[feature_set_name].feature_names)
    return [*names, *SKETCH_FEATURE_NAMES] if sketched else names


def alert_reasons(
    model: torch.nn.Module,
    x: np.ndarray,
    raw: np.ndarray,
    scores: np.ndarray,
    threshold: float | None,
    *,
    top_k: int = DEFAULT_REASONS,
    feature_names: Sequence[str] | None = None,
) -> list[str]:
    """One cell per row: the top ``top_k`` reasons' texts joined by "; ", for alerts only.

    ``x`` are the rows as the model sees them, ``raw`` the same before normalisation,
    ``scores`` the model's scores of them. Rows below ``threshold`` (every row when there is
    none) and every row when ``top_k`` is 0 get an empty cell: explaining every row would
    cost ~64 forward and backward passes each, too slow at a bank's volume.
    ``feature_names``: the model's columns (`ScoringModel.feature_names`); by default
    those of the feature set of ``x``'s width (`feature_names_for`).
    """
    rows = alert_reason_lists(
        model, x, raw, scores, threshold, top_k=top_k, feature_names=feature_names
    )
    return [SEPARATOR.join(reason.text for reason in row) for row in rows]


def alert_reason_lists(
    model: torch.nn.Module,
    x: np.ndarray,
    raw: np.ndarray,
    scores: np.ndarray,
    threshold: float | None,
    *,
    top_k: int = DEFAULT_REASONS,
    feature_names: Sequence[str] | None = None,
) -> list[list[Reason]]:
    """`alert_reasons` as structured reasons (feature, contribution, text) per row."""
    if top_k < 0:
        raise ValueError(f"the number of reasons must be 0 or more, got {top_k}")
    rows: list[list[Reason]] = [[] for _ in range(len(scores))]
    if top_k == 0 or threshold is None:
        return rows
    alerting = np.flatnonzero(np.asarray(scores) >= threshold)
    if alerting.size == 0:
        return rows
    names = list(feature_names) if feature_names is not None else feature_names_for(x.shape[1])
    reasons = explain(model, x[alerting], feature_names=names, raw=raw[alerting], top_k=top_k)
    for row, row_reasons in zip(alerting, reasons, strict=True):
        rows[row] = list(row_reasons)
    return rows

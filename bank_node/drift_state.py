"""Drift at the node: the reference bins of a served model and the PSI of each scored day.

When the node evaluates a global model it keeps, beside it, the bins of its training
split (``drift-reference-round-<n>.json``: the deciles of every raw feature and of the
model's score, `models.drift`). ``bank-node score`` against the node's state directory
then counts each day of the scored transactions into those bins and records the day's
PSI in ``drift-windows.json``; the node's metrics endpoint reads that file
(``bank_node.drift_metrics``). A day scored again is replaced, not added to: a day's
entry describes the last file scored for it. The newest ``KEEP_DAYS`` days are kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bank_node.explain import feature_names_for, policy_feature_names
from bank_node.training import LocalData, Normalizer, model_from_vector
from models.drift import DailyCounts, Reference, WindowDrift, reference_from
from models.feature_sets import FEATURE_SETS
from models.training import predict_scores
from protocol import PolicySnapshot

log = logging.getLogger(__name__)

KEEP_DAYS = 90
WINDOWS_FILE = "drift-windows.json"


def reference_file(state_dir: Path, number: int) -> Path:
    """Where the node keeps the drift reference of round ``number``'s model."""
    return state_dir / f"drift-reference-round-{number}.json"


def windows_file(state_dir: Path) -> Path:
    """Where ``bank-node score`` records each scored day's PSI."""
    return state_dir / WINDOWS_FILE


def drift_reference_save(
    state_dir: Path,
    number: int,
    policy: PolicySnapshot,
    weights: np.ndarray,
    data: LocalData,
    norm: Normalizer | None,
) -> None:
    """Keep the bins of round ``number``'s model (``policy``'s, at ``weights``) on this
    bank's training split.

    Features are binned raw (as `compute_features` gives them); the score is the model's
    on the normalised rows, as ``score`` computes it. A split without rows keeps nothing.
    """
    if data.x_train.shape[0] == 0:
        drift_reference_keep(state_dir, number, None)
        return
    model = model_from_vector(policy.model_spec, policy.n_features, weights)
    x = data.x_train if norm is None else norm.apply(data.x_train)
    sketched = policy.counterparty_sketch is not None
    if policy.feature_set in FEATURE_SETS:
        names = policy_feature_names(policy.feature_set, sketched)
    else:
        names = feature_names_for(data.x_train.shape[1])
    drift_reference_keep(
        state_dir, number, reference_from(data.x_train, predict_scores(model, x), names)
    )


def drift_reference_keep(state_dir: Path, number: int, reference: Reference | None) -> None:
    """Write round ``number``'s reference bins (None: no training rows, nothing kept)."""
    if reference is None:
        log.warning("round %s: no training rows, so no drift reference", number)
        return
    about = {"round": number, **reference.to_dict()}
    _write_json(reference_file(state_dir, number), about)


def drift_record(
    state_dir: Path,
    number: int | None,
    raw: np.ndarray,
    scores: np.ndarray,
    timestamps: np.ndarray,
) -> dict[str, Any] | None:
    """Record the PSI of each day of scored rows against round ``number``'s reference.

    ``number`` is the served model's round. Returns what ``score`` prints (the days
    recorded, the newest day's score PSI and its largest feature PSI), or None when the
    node kept no reference for that model (a local-only model has no round).
    """
    counts = drift_counter(state_dir, number)
    if counts is None or number is None:
        return None
    counts.add(raw, scores, np.asarray(timestamps).astype("datetime64[D]"))
    return drift_save(state_dir, number, counts.drift())


def drift_counter(state_dir: Path, number: int | None) -> DailyCounts | None:
    """A per-day counter against round ``number``'s reference; None when none was kept."""
    if number is None:
        return None
    path = reference_file(state_dir, number)
    if not path.exists():
        return None
    return DailyCounts(Reference.from_dict(json.loads(path.read_text())))


def drift_save(state_dir: Path, number: int, days: Mapping[str, WindowDrift]) -> dict[str, Any]:
    """Record ``days`` (replacing days scored again) and return what ``score`` prints."""
    windows = load_windows(state_dir)
    recorded_at = datetime.now(UTC).isoformat(timespec="seconds")
    for day, drift in days.items():
        windows[day] = _entry(drift, number, recorded_at)
    kept = dict(sorted(windows.items())[-KEEP_DAYS:])
    _write_json(windows_file(state_dir), {"days": kept})
    return _summary(days)


def load_windows(state_dir: Path) -> dict[str, dict[str, Any]]:
    """The recorded days (``{"YYYY-MM-DD": entry}``); empty when none or unreadable."""
    path = windows_file(state_dir)
    try:
        days = json.loads(path.read_text())["days"] if path.exists() else {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s unreadable, starting the drift record again: %s", path, exc)
        return {}
    return dict(days) if isinstance(days, dict) else {}


def newest_window(state_dir: Path) -> tuple[str, dict[str, Any]] | None:
    """The newest recorded day and its entry, or None."""
    windows = load_windows(state_dir)
    if not windows:
        return None
    day = max(windows)
    return day, windows[day]


def _entry(drift: WindowDrift, number: int, recorded_at: str) -> dict[str, Any]:
    return {
        "rows": drift.rows,
        "score_psi": drift.score,
        "feature_psi": drift.features,
        "reference_round": number,
        "recorded_at": recorded_at,
    }


def _summary(days: Mapping[str, WindowDrift]) -> dict[str, Any]:
    if not days:
        return {"days": [], "newest_day": None}
    newest = max(days)
    drift = days[newest]
    worst = max(drift.features, key=lambda name: drift.features[name])
    return {
        "days": sorted(days),
        "newest_day": newest,
        "score_psi": round(drift.score, 4),
        "max_feature_psi": {worst: round(drift.features[worst], 4)},
    }


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1, sort_keys=True))
    tmp.replace(path)  # a scrape never reads half a file

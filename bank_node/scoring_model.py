"""A model ready to score transactions, read from a directory in the node's model format.

The format is the one the agent writes for the newest evaluated global model
(``bank_node.state.save_global_model``) and ``bank-node baseline --save`` writes for a
local-only model: ``global_model.npy`` (the weights), ``global_model.json`` (round, policy
snapshot, statistics round, alert threshold) and, when the policy normalises features,
``normalization-round-N.json``. A model of a ``counterparty_sketch`` policy reads the
cross-bank columns after its feature set's, from the sketch round the node keeps
(``bank_node.sketch_scoring``). Everything that scores — ``bank-node score``, ``bank-node
serve``, the model registry — loads a model through `load_scoring_model` and uses the same
four steps: raw features, normalised features, scores, alerts.

A node's state directory also holds its model registry (``bank_node.registry``):
``models/<version>/`` in this same format, plus ``models/promoted`` naming the version
this bank chose to serve. Loading a directory that holds a registry loads that version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bank_node.config import ConfigError
from bank_node.model_files import MODEL_META, MODEL_WEIGHTS, promoted_directory
from bank_node.passport import (
    PASSPORT_FILE,
    describe_inputs,
    inputs_version,
    policy_inputs_version,
    read_passport,
    version_name,
)
from bank_node.sketch_scoring import (
    CrossBankColumns,
    SketchSource,
    cross_bank_columns,
    model_key_epoch,
)
from bank_node.training import Normalizer, model_from_vector
from models.counterparty_sketch import SKETCH_FEATURE_NAMES, sketch_feature_count
from models.feature_sets import FeatureSet, feature_set
from models.training import predict_scores
from protocol import PolicySnapshot, ProtocolError

__all__ = ["MODEL_META", "MODEL_WEIGHTS", "ScoringModel", "SketchSource", "load_scoring_model"]


@dataclass(frozen=True)
class ScoringModel:
    """One model with everything needed to turn transactions into scores and alerts."""

    net: torch.nn.Module
    policy: PolicySnapshot
    normalizer: Normalizer | None
    threshold: float | None
    round: int | None  # the published round it came from; None for a local-only model
    label: str  # "global" or "local-only"
    source: Path
    version: str | None = None  # the registry version, when loaded from the registry
    cross_bank: CrossBankColumns | None = None  # a counterparty_sketch policy's columns

    @property
    def feature_set(self) -> FeatureSet:
        """The feature set the policy names (``models.feature_sets``)."""
        return feature_set(self.policy.feature_set)

    @property
    def model_version(self) -> str:
        """The version each scored row names: the registry's, else ``round-N``, else the label.

        A model loaded from the root ``global_model.*`` files is the model of its round,
        which the registry stores under the same name (``bank_node.passport.version_name``).
        """
        if self.version is not None:
            return self.version
        return self.label if self.round is None else version_name(self.round)

    @property
    def feature_names(self) -> list[str]:
        extra = SKETCH_FEATURE_NAMES if self.cross_bank is not None else []
        return [*self.feature_set.feature_names, *extra]

    def features(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw (un-normalised) features of a normalised transaction frame, in frame order.

        A frame without the columns the model's feature set needs is a ValueError naming
        the set and the columns. A model of a sketch policy appends each row's cross-bank
        columns, as training does (`bank_node.sketch_round.sketched_local_data`).
        """
        spec = self.feature_set
        if missing := spec.missing(frame.columns):
            raise ValueError(
                f"the model reads feature set {spec.name!r}, which needs columns {missing} "
                "this data does not have"
            )
        own = spec.compute(frame)
        if self.cross_bank is None:
            return own
        return np.hstack([own, self.cross_bank.features(frame)])

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        return raw if self.normalizer is None else self.normalizer.apply(raw)

    def scores(self, normalised: np.ndarray) -> np.ndarray:
        return predict_scores(self.net, normalised)

    def alerts(self, scores: np.ndarray) -> np.ndarray:
        """True where a score reaches the threshold (never, when the model has none)."""
        if self.threshold is None:
            return np.zeros(scores.shape, dtype=bool)
        return scores >= self.threshold

    def score_frame(self, frame: pd.DataFrame) -> np.ndarray:
        return self.scores(self.normalise(self.features(frame)))


def load_scoring_model(
    directory: Path, *, hint: str = "", sketches: SketchSource | None = None
) -> ScoringModel:
    """The model in ``directory`` (its promoted version, if it holds a registry).

    ``sketches``: where the node keeps its sketch rounds and keys, needed for a model of a
    ``counterparty_sketch`` policy. A ConfigError names the missing or bad file.
    """
    directory, version = promoted_directory(directory)
    meta_path = directory / MODEL_META
    if not meta_path.exists():
        raise ConfigError(f"{meta_path} does not exist" + (f": {hint}" if hint else ""))
    try:
        meta = json.loads(meta_path.read_text())
        policy = PolicySnapshot.from_dict(meta.get("policy"))
    except (json.JSONDecodeError, ProtocolError, AttributeError) as exc:
        raise ConfigError(f"{meta_path}: not a model description: {exc}") from exc
    _check_width(meta_path, policy)
    _check_inputs(meta_path, meta, policy)
    weights_path = directory / MODEL_WEIGHTS
    if not weights_path.exists():
        raise ConfigError(f"{weights_path} does not exist (its {MODEL_META} does)")
    try:
        net = model_from_vector(policy.model_spec, policy.n_features, np.load(weights_path))
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"{weights_path}: does not fit the policy's model: {exc}") from exc
    return ScoringModel(
        net=net,
        policy=policy,
        normalizer=_normalizer(directory, meta.get("stats_round")),
        threshold=meta.get("threshold"),
        round=meta.get("round"),
        label=meta.get("model", "global"),
        source=directory,
        version=version,
        cross_bank=_cross_bank(meta_path, meta, policy, sketches),
    )


def _check_width(meta_path: Path, policy: PolicySnapshot) -> None:
    """The policy's width is its feature set's plus the cross-bank columns it reads."""
    try:
        spec = feature_set(policy.feature_set)
    except ValueError as exc:
        raise ConfigError(f"{meta_path}: {exc}; this node cannot compute its features") from exc
    sketched = sketch_feature_count(policy.counterparty_sketch)
    if spec.n_features + sketched != policy.n_features:
        plus = f" plus {sketched} cross-bank sketch features" if sketched else ""
        raise ConfigError(
            f"{meta_path}: the policy reads {policy.n_features} features, its feature set "
            f"{spec.name!r} computes {spec.n_features}{plus}"
        )


def _check_inputs(meta_path: Path, meta: dict[str, Any], policy: PolicySnapshot) -> None:
    """The columns every scorer feeds (the policy's) are those the model's records say it read.

    A registry version's ``passport.json`` and a local-only model's ``global_model.json``
    record their digest (`bank_node.passport.inputs_version`). A model stored before either
    did records none, and only its width is checked (`_check_width`).
    """
    fed = policy_inputs_version(policy)
    recorded = [(meta_path, meta.get("feature_set"))]
    if (meta_path.parent / PASSPORT_FILE).exists():
        recorded.append((meta_path.parent / PASSPORT_FILE, _passport_inputs(meta_path, policy)))
    for path, digest in recorded:
        if digest is None or digest == fed:
            continue
        if digest == inputs_version(policy.feature_set, None):
            said = f"feature set {policy.feature_set!r} only"
        else:
            said = "other columns (cross-bank sketch columns, or another spec of them)"
        raise ConfigError(
            f"{path}: the model was trained on {said} (inputs {digest}), but the policy in "
            f"{meta_path.name} makes every scorer feed it {describe_inputs(policy)} (inputs "
            f"{fed}); the two files describe different models: restore the directory from a "
            "backup, or score another version (`bank-node models list`)"
        )


def _passport_inputs(meta_path: Path, policy: PolicySnapshot) -> str:
    """The inputs a version's passport records, reading a sketch model's passport written
    before the digest covered the cross-bank columns as what its own policy digest says."""
    passport = read_passport(meta_path.parent)
    legacy = inputs_version(policy.feature_set, None)
    if (
        policy.counterparty_sketch is not None
        and passport.feature_set == legacy
        and passport.policy.digest == policy.digest()
    ):
        return policy_inputs_version(policy)
    return passport.feature_set


def _cross_bank(
    meta_path: Path, meta: dict[str, Any], policy: PolicySnapshot, sketches: SketchSource | None
) -> CrossBankColumns | None:
    spec = policy.counterparty_sketch
    if spec is None:
        return None
    if sketches is None:  # a caller with no node state: never a model scored without them
        raise ConfigError(
            f"{meta_path}: the model reads cross-bank sketch features, computed from the "
            "sketch rounds and keys of a node's state_dir; score it with `bank-node score`"
        )
    return cross_bank_columns(sketches, spec, model_key_epoch(meta, meta_path.parent), meta_path)


def _normalizer(directory: Path, stats_round: int | None) -> Normalizer | None:
    if stats_round is None:
        return None
    path = directory / f"normalization-round-{stats_round}.json"
    if not path.exists():
        raise ConfigError(f"{path} does not exist (the model was trained on normalised features)")
    return Normalizer.from_json(path.read_text())

"""A model directory is loaded whole for scoring, or refused with the file named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bank_node.baseline import default_policy, save_model
from bank_node.config import ConfigError
from bank_node.scoring_model import MODEL_META, MODEL_WEIGHTS, load_scoring_model
from bank_node.training import Normalizer
from models.features import FEATURE_NAMES
from models.nets import build_model
from models.vector import model_to_vector
from protocol import PolicySnapshot
from tests.protocol.messages import sketch_dict

N = len(FEATURE_NAMES)


def _policy() -> PolicySnapshot:
    return default_policy()


def _saved(tmp_path: Path, *, norm: bool) -> tuple[Path, np.ndarray]:
    policy = _policy()
    weights = model_to_vector(build_model(policy.model_spec, N))
    moments = np.concatenate([np.full(N, 2.0), np.full(N, 8.0)])
    normalizer = Normalizer.from_moments(moments, 3, rows=2) if norm else None
    save_model(tmp_path, weights, policy, 0.4, normalizer)
    return tmp_path, weights


def test_a_saved_model_scores_rows_the_same_as_its_network(tmp_path: Path):
    directory, _ = _saved(tmp_path, norm=False)
    model = load_scoring_model(directory)
    raw = np.random.default_rng(0).normal(size=(5, N)).astype(np.float32)
    scores = model.scores(model.normalise(raw))
    assert scores.shape == (5,) and np.all((scores > 0) & (scores < 1))
    assert model.threshold == 0.4 and model.label == "local-only" and model.round is None
    assert list(model.alerts(np.array([0.39, 0.4]))) == [False, True]


def test_a_model_trained_on_normalised_features_normalises_before_scoring(tmp_path: Path):
    directory, _ = _saved(tmp_path, norm=True)
    model = load_scoring_model(directory)
    assert model.normalizer is not None
    raw = np.full((1, N), 2.0, dtype=np.float32)
    assert not np.allclose(model.normalise(raw), raw)


def test_a_missing_normalisation_file_is_named(tmp_path: Path):
    directory, _ = _saved(tmp_path, norm=True)
    (directory / "normalization-round-3.json").unlink()
    with pytest.raises(ConfigError, match=r"normalization-round-3\.json does not exist"):
        load_scoring_model(directory)


def test_a_corrupt_description_or_missing_weights_is_named(tmp_path: Path):
    directory, _ = _saved(tmp_path, norm=False)
    (directory / MODEL_WEIGHTS).unlink()
    with pytest.raises(ConfigError, match=r"global_model\.npy does not exist"):
        load_scoring_model(directory)
    (directory / MODEL_META).write_text(json.dumps({"policy": {"model_spec": 3}}))
    with pytest.raises(ConfigError, match="not a model description"):
        load_scoring_model(directory)


def test_weights_that_do_not_fit_the_policy_are_refused(tmp_path: Path):
    directory, weights = _saved(tmp_path, norm=False)
    np.save(directory / MODEL_WEIGHTS, weights[:-7])
    with pytest.raises(ConfigError, match="does not fit the policy's model"):
        load_scoring_model(directory)


def test_a_sketch_policy_whose_width_leaves_out_the_cross_bank_columns_is_refused(
    tmp_path: Path,
):
    # Scoring a sketch model itself: tests/bank_node/test_score_sketch.py.
    directory, _ = _saved(tmp_path, norm=False)
    meta = json.loads((directory / MODEL_META).read_text())
    meta["policy"]["counterparty_sketch"] = sketch_dict()
    (directory / MODEL_META).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=f"computes {N} plus 6 cross-bank sketch features"):
        load_scoring_model(directory)

"""train_local / predict_scores, including one real learning check on the tiny world."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from bank_node.data import chronological_split
from models.features import compute_features
from models.metrics import auprc
from models.nets import build_model
from models.training import predict_scores, train_local
from models.vector import model_to_vector

SPEC = {"kind": "mlp", "hidden": [32, 16], "seed": 7, "loss": "bce", "pos_weight": 10.0}


def small_problem(n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] + 0.3 * rng.normal(size=n) > 1.2).astype(np.float32)


def test_a_model_trained_on_one_banks_history_ranks_its_held_out_laundering_well(
    bank_one: pd.DataFrame,
) -> None:
    features = compute_features(bank_one)
    labels = bank_one["label"].to_numpy()
    train, _, test = (bank_one.index.get_indexer(p.index) for p in chronological_split(bank_one))
    model = build_model(SPEC, features.shape[1])
    n = train_local(model, features[train], labels[train], epochs=5, batch_size=256, lr=3e-3)
    assert n == len(train)
    scores = predict_scores(model, features[test])
    base_rate = labels[test].mean()
    assert auprc(labels[test], scores) > 3 * base_rate


def test_training_twice_with_the_same_seed_gives_identical_weights() -> None:
    x, y = small_problem()
    runs = []
    for _ in range(2):
        model = build_model(SPEC, 4)
        train_local(model, x, y, epochs=2, batch_size=64, seed=5)
        runs.append(model_to_vector(model))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], model_to_vector(build_model(SPEC, 4)))


def test_training_leaves_global_state_as_it_found_it() -> None:
    x, y = small_problem()
    model = build_model({**SPEC, "lr": 0.001}, 4)
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    train_local(model, x, y, epochs=1, batch_size=64, lr=0.05, x_val=x[:50], y_val=y[:50])
    assert torch.rand(1) == expected
    assert model.hparams["lr"] == 0.001
    assert not torch.are_deterministic_algorithms_enabled()


def test_predict_scores_gives_probabilities_and_restores_the_training_mode() -> None:
    x, _ = small_problem(50)
    model = build_model(SPEC, 4)
    model.train()
    scores = predict_scores(model, x, batch_size=16)
    assert scores.dtype == np.float64 and scores.shape == (50,)
    assert ((scores > 0) & (scores < 1)).all()
    assert model.training
    assert predict_scores(model, x[:0]).shape == (0,)


def _trained(epochs: int, max_steps: int | None = None) -> np.ndarray:
    x, y = small_problem()  # 600 rows: 10 batches of 64 an epoch (the last one of 24)
    model = build_model(SPEC, 4)
    train_local(model, x, y, epochs=epochs, batch_size=64, seed=5, max_steps=max_steps)
    return model_to_vector(model)


def test_max_steps_takes_exactly_that_many_steps_across_epochs() -> None:
    # 20 steps are two whole epochs, whatever `epochs` says; 15 stop halfway through the
    # second (the data cycles, reshuffled); 16 take one more step than 15.
    two_epochs = _trained(epochs=2)
    np.testing.assert_array_equal(_trained(epochs=1, max_steps=20), two_epochs)
    np.testing.assert_array_equal(_trained(epochs=7, max_steps=20), two_epochs)
    fifteen = _trained(epochs=1, max_steps=15)
    assert not np.array_equal(fifteen, two_epochs)
    assert not np.array_equal(fifteen, _trained(epochs=1, max_steps=16))
    assert not np.array_equal(fifteen, _trained(epochs=1))


def test_max_steps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_steps must be positive"):
        _trained(epochs=1, max_steps=0)

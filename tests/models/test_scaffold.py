"""SCAFFOLD's control variates: the full gradient, the correction term, the weighted mean."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.nets import build_model
from models.scaffold import full_gradient, weighted_mean
from models.vector import model_to_vector, vector_length

SPEC = {"kind": "mlp", "hidden": [4], "seed": 3, "pos_weight": 5.0}


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (rng.random(n) < 0.2).astype(np.float32)
    return x, y


def _grads(model) -> np.ndarray:
    return np.concatenate(
        [
            p.grad.detach().double().reshape(-1).numpy()
            for p in model.parameters()
            if p.grad is not None
        ]
    )


def _autograd_on_all_rows(model, x, y) -> np.ndarray:
    model.zero_grad()
    model._loss(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    return np.concatenate(
        [p.grad.detach().double().reshape(-1).numpy() for p in model.parameters()]
    )


def test_the_full_gradient_in_chunks_is_the_gradient_of_the_loss_over_every_row():
    model = build_model(SPEC, 3)
    x, y = _rows(1000, 0)
    chunked = full_gradient(model, x, y, chunk_rows=97)  # uneven chunks, a short last one
    assert chunked.shape == (vector_length(model),)
    np.testing.assert_allclose(chunked, _autograd_on_all_rows(model, x, y), rtol=1e-5, atol=1e-7)


def test_the_full_gradient_leaves_the_weights_and_the_mode_alone():
    model = build_model(SPEC, 3)
    before = model_to_vector(model)
    model.train()
    full_gradient(model, *_rows(50, 1))
    assert model.training
    assert model_to_vector(model).tobytes() == before.tobytes()


def test_the_correction_adds_exactly_c_minus_c_i_to_every_training_gradient():
    model = build_model(SPEC, 3)
    x, y = _rows(64, 2)
    batch = (torch.from_numpy(x), torch.from_numpy(y))
    model.zero_grad()
    model._common_step(batch, "train").backward()
    plain = _grads(model)
    correction = np.linspace(-1.0, 1.0, vector_length(model))
    model.set_control_correction(correction)
    model.zero_grad()
    model._common_step(batch, "train").backward()
    corrected = _grads(model)
    np.testing.assert_allclose(corrected - plain, correction, rtol=1e-5, atol=1e-6)
    model.set_control_correction(None)
    model.zero_grad()
    model._common_step(batch, "train").backward()
    cleared = _grads(model)
    np.testing.assert_allclose(cleared, plain, rtol=1e-6)


def test_a_correction_of_the_wrong_length_is_refused_by_name():
    model = build_model(SPEC, 3)
    with pytest.raises(ValueError, match="control-variate correction has 2 values"):
        model.set_control_correction(np.zeros(2))


def test_the_consortium_variate_is_the_gradient_of_the_pooled_rows():
    """Row-weighted, the banks' variates average to the gradient over all their rows (exactly
    so with pos_weight 1, where the loss is the plain mean over rows)."""
    model = build_model({**SPEC, "pos_weight": 1.0}, 3)
    (xa, ya), (xb, yb) = _rows(300, 4), _rows(100, 5)
    pooled = full_gradient(model, np.vstack([xa, xb]), np.concatenate([ya, yb]))
    mean = weighted_mean([(full_gradient(model, xa, ya), 300), (full_gradient(model, xb, yb), 100)])
    np.testing.assert_allclose(mean, pooled, rtol=1e-5, atol=1e-7)


def test_a_mean_over_no_rows_is_refused():
    with pytest.raises(ValueError, match="no rows"):
        weighted_mean([(np.ones(2), 0)])

"""Model <-> flat vector: order, round trip and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from models.nets import build_model
from models.vector import model_to_vector, vector_length, vector_to_model

SPEC = {"kind": "mlp", "hidden": [8, 4], "seed": 3}


def test_the_vector_is_float64_parameters_in_named_parameters_order() -> None:
    model = build_model(SPEC, 5)
    vec = model_to_vector(model)
    expected = np.concatenate([p.detach().numpy().ravel() for _, p in model.named_parameters()])
    assert vec.dtype == np.float64
    assert len(vec) == vector_length(model) == (5 * 8 + 8) + (8 * 4 + 4) + (4 + 1)
    np.testing.assert_array_equal(vec, expected)


def test_a_vector_loaded_into_another_model_round_trips_exactly() -> None:
    source, target = build_model(SPEC, 5), build_model({**SPEC, "seed": 4}, 5)
    vector_to_model(target, model_to_vector(source))
    np.testing.assert_array_equal(model_to_vector(target), model_to_vector(source))


def test_a_vector_of_the_wrong_length_is_refused_with_both_lengths() -> None:
    model = build_model(SPEC, 5)
    with pytest.raises(ValueError, match=r"has 10 values but FraudMLP has 89 parameters"):
        vector_to_model(model, np.zeros(10))


def test_a_vector_with_nan_is_refused_and_leaves_the_model_unchanged() -> None:
    model = build_model(SPEC, 5)
    before = model_to_vector(model)
    bad = before.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        vector_to_model(model, bad)
    np.testing.assert_array_equal(model_to_vector(model), before)


def test_the_mlp_has_no_buffers_so_its_vector_is_exactly_its_parameters() -> None:
    assert list(build_model(SPEC, 5).named_buffers()) == []


def test_buffers_follow_parameters_when_a_module_has_them() -> None:
    norm = nn.BatchNorm1d(2)
    vec = model_to_vector(norm)
    assert len(vec) == 2 + 2 + 2 + 2 + 1  # weight, bias, running mean/var, batch count
    vec[4:6] = [0.5, 0.25]  # running_mean
    vector_to_model(norm, vec)
    assert norm.running_mean is not None
    assert norm.running_mean.tolist() == [0.5, 0.25]

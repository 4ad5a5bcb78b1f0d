"""A round without a base starts, and is clipped, at weights every node computes alike."""

from __future__ import annotations

import numpy as np
import torch

from bank_node.training import model_from_vector
from models.nets import initial_vector
from models.vector import model_to_vector

SPEC = {"kind": "mlp", "hidden": [8, 4], "seed": 3, "loss": "bce"}


def test_the_initial_vector_depends_on_the_spec_seed_not_on_torchs_global_generator():
    torch.manual_seed(1)
    first = initial_vector(SPEC, 12)
    torch.manual_seed(99)
    torch.rand(1000)  # another node's process has drawn other numbers before
    assert np.array_equal(initial_vector(SPEC, 12), first)
    assert not np.array_equal(initial_vector({**SPEC, "seed": 4}, 12), first)


def test_training_starts_from_the_initial_vector_whatever_the_learning_settings():
    start = model_from_vector(SPEC, 12, None, lr=0.5, fedprox_mu=0.1)
    assert np.array_equal(model_to_vector(start), initial_vector(SPEC, 12))

"""FraudMLP and build_model: deterministic initialisation, losses, FedProx."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.nets import FraudMLP, build_model
from models.vector import model_to_vector, vector_to_model

ROOT = Path(__file__).resolve().parents[2]
SPEC = {"kind": "mlp", "hidden": [32, 16], "seed": 7, "loss": "bce"}
DIGEST_SCRIPT = (
    "import hashlib; from models.nets import build_model; from models.vector import model_to_vector;"
    "import torch; torch.manual_seed({noise});"
    "print(hashlib.sha256(model_to_vector(build_model({spec!r}, 44)).tobytes()).hexdigest())"
)


def digest(model: torch.nn.Module) -> str:
    return hashlib.sha256(model_to_vector(model).tobytes()).hexdigest()


def test_the_same_spec_gives_byte_identical_weights_in_separate_processes() -> None:
    # The two processes' global torch seeds differ: the spec's seed alone must decide.
    script = DIGEST_SCRIPT.format(spec=SPEC, noise=1)
    other = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert other.returncode == 0, other.stderr
    torch.manual_seed(2)
    assert other.stdout.strip() == digest(build_model(SPEC, 44))


def test_a_different_seed_gives_different_initial_weights() -> None:
    assert digest(build_model(SPEC, 44)) != digest(build_model({**SPEC, "seed": 8}, 44))


def test_building_a_model_does_not_consume_torchs_global_random_stream() -> None:
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    build_model(SPEC, 44)
    assert torch.rand(1) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "gbm"}, "unsupported model kind"),
        ({"hidden": [4]}, "unsupported model kind"),
        ({"kind": "mlp", "hiden": [4]}, r"unknown model spec keys \['hiden'\]"),
        ({"kind": "mlp", "loss": "hinge"}, "loss must be one of"),
    ],
)
def test_a_spec_we_cannot_build_is_refused_with_the_reason(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(spec, 4)


def test_the_spec_reaches_the_saved_hyperparameters() -> None:
    model = build_model({**SPEC, "lr": 0.01, "pos_weight": 5.0, "fedprox_mu": 0.1}, 44)
    assert model.hparams["hidden"] == (32, 16)
    assert model.hparams["lr"] == 0.01
    assert model.hparams["pos_weight"] == 5.0
    assert model.hparams["fedprox_mu"] == 0.1


def test_pos_weight_makes_a_missed_positive_cost_more() -> None:
    logits, y = torch.tensor([-3.0, -3.0]), torch.tensor([1.0, 0.0])
    plain = FraudMLP(4)._loss(logits, y)
    weighted = FraudMLP(4, pos_weight=10.0)._loss(logits, y)
    assert weighted > plain


def test_focal_loss_discounts_confident_correct_rows_more_than_hard_ones() -> None:
    y = torch.tensor([1.0])
    easy, hard = torch.tensor([4.0]), torch.tensor([-1.0])
    bce, focal = FraudMLP(4), FraudMLP(4, loss="focal")
    assert focal._loss(easy, y) / bce._loss(easy, y) < focal._loss(hard, y) / bce._loss(hard, y)


def test_the_fedprox_term_is_half_mu_times_the_squared_distance_to_the_reference() -> None:
    model = build_model({**SPEC, "fedprox_mu": 0.5}, 6)
    reference = model_to_vector(model)
    model.set_fedprox_reference(reference)
    assert model._proximal_term().item() == 0
    moved = reference + 0.1
    vector_to_model(model, moved)
    expected = 0.5 / 2 * np.sum((moved - reference) ** 2)
    assert model._proximal_term().item() == pytest.approx(expected, rel=1e-5)


def test_the_fedprox_reference_is_a_copy_not_a_view_of_the_callers_array() -> None:
    model = build_model({**SPEC, "fedprox_mu": 1.0}, 6)
    reference = model_to_vector(model)
    model.set_fedprox_reference(reference)
    reference += 5.0
    assert model._proximal_term().item() == 0


def test_clearing_the_fedprox_reference_removes_the_term_and_a_wrong_length_is_refused() -> None:
    model = build_model({**SPEC, "fedprox_mu": 1.0}, 6)
    model.set_fedprox_reference(model_to_vector(model) + 1)
    assert model._proximal_term().item() > 0
    model.set_fedprox_reference(None)
    assert model._proximal_term().item() == 0
    with pytest.raises(ValueError, match="FedProx reference has 3 values"):
        model.set_fedprox_reference(np.zeros(3))

"""Personalisation: fine-tuning changes only what it should, and the choice is made on validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.nets import FraudMLP, build_model
from models.personalise import CANDIDATES, FineTune, fine_tune, head_layer, personalise

SPEC = {"kind": "mlp", "hidden": [8, 4], "seed": 3, "loss": "bce", "pos_weight": 5.0}


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose label is the sign of the first feature: a model can learn it in one epoch."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return x, (x[:, 0] > 1.0).astype(np.float32)


def _weights(model: FraudMLP) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_fine_tuning_the_head_changes_the_last_layer_and_nothing_else() -> None:
    model = build_model(SPEC, 6)
    before = _weights(model)
    tuned = fine_tune(model, *_rows(600, 0), FineTune("head", "head", 1, 1e-2), batch_size=64)
    after = _weights(tuned)
    head = {"net.4.weight", "net.4.bias"}  # Linear, ReLU, Linear, ReLU, Linear: the last
    last = list(head_layer(tuned).parameters())
    assert {n for n, p in tuned.named_parameters() if any(p is q for q in last)} == head
    for name in before:
        changed = not torch.equal(before[name], after[name])
        assert changed == (name in head), name
    assert all(p.requires_grad for p in tuned.parameters())  # the freeze is undone


def test_fine_tuning_every_layer_changes_the_hidden_layers_too() -> None:
    model = build_model(SPEC, 6)
    before = _weights(model)
    tuned = fine_tune(model, *_rows(600, 0), FineTune("all", "all", 1, 1e-2), batch_size=64)
    after = _weights(tuned)
    assert all(not torch.equal(before[name], after[name]) for name in before)


def test_fine_tuning_leaves_the_federated_model_it_started_from_untouched() -> None:
    model = build_model(SPEC, 6)
    before = _weights(model)
    tuned = fine_tune(model, *_rows(600, 0), FineTune("all", "all", 1, 1e-2), batch_size=64)
    assert all(torch.equal(before[k], v) for k, v in _weights(model).items())
    assert tuned is not model


def test_the_none_candidate_is_a_copy_with_the_same_weights() -> None:
    model = build_model(SPEC, 6)
    kept = fine_tune(model, *_rows(100, 0), CANDIDATES[0], batch_size=64)
    assert kept is not model
    assert all(torch.equal(_weights(model)[k], v) for k, v in _weights(kept).items())
    next(kept.parameters()).data.add_(1.0)  # no shared tensors: the original stays as it was
    assert not torch.equal(next(kept.parameters()), next(model.parameters()))


def test_personalise_keeps_the_candidate_with_the_best_validation_auprc() -> None:
    model = build_model(SPEC, 6)  # untrained: fine-tuning on learnable rows must beat it
    candidates = [CANDIDATES[0], FineTune("all", "all", 2, 1e-2)]
    out = personalise(model, _rows(2000, 0), _rows(1000, 1), batch_size=64,
                      candidates=candidates)  # fmt: skip
    assert out.choice.name == "all"
    assert out.val_auprc["all"] > out.val_auprc["global"]
    assert out.val_auprc["all"] == max(out.val_auprc.values())


def test_personalise_keeps_the_federated_model_when_validation_has_no_positive() -> None:
    model = build_model(SPEC, 6)
    x_val, y_val = _rows(200, 1)
    out = personalise(model, _rows(600, 0), (x_val, np.zeros_like(y_val)), batch_size=64,
                      candidates=[CANDIDATES[0], FineTune("all", "all", 1, 1e-2)])  # fmt: skip
    assert out.choice == CANDIDATES[0]
    assert all(np.isnan(v) for v in out.val_auprc.values())


def test_personalise_refuses_an_empty_candidate_list() -> None:
    with pytest.raises(ValueError, match="at least one candidate"):
        personalise(build_model(SPEC, 6), _rows(10, 0), _rows(10, 1), batch_size=4,
                    candidates=[])  # fmt: skip

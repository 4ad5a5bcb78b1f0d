"""Plaintext FedAvg: the weighted average the encrypted protocol produces, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from models.federation import fedavg, run_fedavg
from models.nets import build_model
from models.training import train_local
from models.vector import model_to_vector, vector_to_model


def test_fedavg_weights_each_update_by_its_sample_count() -> None:
    a, b = np.array([1.0, 2.0, -4.0]), np.array([3.0, 0.0, 8.0])
    expected = (10 * a + 30 * b) / 40  # = [2.5, 0.5, 5.0]
    np.testing.assert_allclose(fedavg([(a, 10), (b, 30)]), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(expected, [2.5, 0.5, 5.0])


@pytest.mark.parametrize("bad", [[], [(np.ones(2), 0)], [(np.ones(2), 1), (np.ones(3), 1)]])
def test_fedavg_refuses_no_updates_empty_banks_and_mismatched_lengths(bad: list) -> None:
    with pytest.raises(ValueError):
        fedavg(bad)


def test_a_simulated_round_of_two_real_models_equals_their_hand_weighted_average() -> None:
    rng = np.random.default_rng(0)
    spec = {"kind": "mlp", "hidden": [4], "seed": 3}
    data = []
    for n in (40, 120):
        x = rng.normal(size=(n, 3)).astype(np.float32)
        data.append((x, (x[:, 0] > 0.5).astype(np.float32)))

    def train(party: int, base: np.ndarray | None, number: int) -> tuple[np.ndarray, int]:
        model = build_model(spec, 3)
        if base is not None:
            vector_to_model(model, base)
        n = train_local(model, *data[party], epochs=1, batch_size=16, lr=0.05, seed=number)
        return model_to_vector(model), n

    first, second = run_fedavg(train, n_parties=2, rounds=2)
    w0, n0 = train(0, None, 1)
    assert n0 == 40
    w1, n1 = train(1, None, 1)
    assert n1 == 120
    np.testing.assert_allclose(first, (40 * w0 + 120 * w1) / 160, rtol=0, atol=1e-12)
    assert not np.allclose(first, w0) and not np.allclose(first, w1)
    # Round 2 starts from round 1's average, with the round number as the training seed.
    v0, _ = train(0, first, 2)
    v1, _ = train(1, first, 2)
    np.testing.assert_allclose(second, (40 * v0 + 120 * v1) / 160, rtol=0, atol=1e-12)

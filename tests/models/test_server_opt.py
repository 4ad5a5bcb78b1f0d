"""The server optimisers against steps computed by hand, and their determinism."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from models.server_opt import (
    SERVER_OPTIMIZERS,
    ServerOptParams,
    ServerOptState,
    initial_state,
    model_digest,
    step,
)

BASE = np.array([1.0, -2.0])
AVERAGE = np.array([1.5, -2.5])  # the pseudo-gradient d = average - base = [0.5, -0.5]


def test_fedavg_returns_the_average_itself_bit_for_bit():
    average = np.array([0.1, 0.2, 0.30000000000000004])
    new, state = step(None, np.zeros(3), average, ServerOptParams())
    assert new.tobytes() == average.tobytes()
    assert state.m is None and state.v is None


def test_fedavgm_accumulates_momentum_over_two_steps():
    params = ServerOptParams("fedavgm", lr=1.0, momentum=0.9)
    first, state = step(None, BASE, AVERAGE, params)
    assert first.tolist() == pytest.approx([1.5, -2.5])  # m = d; x + 1 * m
    # second round: d = [0.25, 0]; m = 0.9 * [0.5, -0.5] + d = [0.7, -0.45]
    second, state = step(state, first, np.array([1.75, -2.5]), params)
    assert state.m is not None and state.m.tolist() == pytest.approx([0.7, -0.45])
    assert second.tolist() == pytest.approx([2.2, -2.95])
    assert state.steps == 2


def test_fedavgm_with_half_the_learning_rate_moves_half_way():
    new, _ = step(None, BASE, AVERAGE, ServerOptParams("fedavgm", lr=0.5, momentum=0.9))
    assert new.tolist() == pytest.approx([1.25, -2.25])


def _adam_by_hand(v: float, lr: float = 0.1, tau: float = 1e-3) -> float:
    m = 0.1 * 0.5  # (1 - beta1) * d
    return 1.0 + lr * m / (math.sqrt(v) + tau)


def test_fedadam_first_step_matches_reddi_et_al_algorithm_2():
    params = ServerOptParams("fedadam", lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3)
    new, state = step(None, BASE, AVERAGE, params)
    v = 0.99 * 1e-6 + 0.01 * 0.25  # v starts at tau**2
    assert state.v is not None and state.v.tolist() == pytest.approx([v, v], rel=1e-12)
    assert state.m is not None and state.m.tolist() == pytest.approx([0.05, -0.05])
    assert new[0] == pytest.approx(_adam_by_hand(v), rel=1e-12)
    assert new[1] == pytest.approx(-2.0 - (new[0] - 1.0), rel=1e-12)  # symmetric step


def test_fedyogi_lowers_its_second_moment_where_adam_would_average_it():
    params = ServerOptParams("fedyogi", lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3)
    first, state = step(None, BASE, AVERAGE, params)
    v1 = 1e-6 + 0.01 * 0.25  # v < d²: v rises by (1 - beta2) d²
    assert state.v is not None and state.v[0] == pytest.approx(v1, rel=1e-12)
    assert first[0] == pytest.approx(_adam_by_hand(v1), rel=1e-12)
    small = first + np.array([0.01, 0.01])  # d² = 1e-4 < v: Yogi lowers v by (1 - beta2) d²
    _, state = step(state, first, small, params)
    assert state.v is not None and state.v[0] == pytest.approx(v1 - 0.01 * 1e-4, rel=1e-12)
    adam = ServerOptParams("fedadam", lr=0.1, beta1=0.9, beta2=0.99, tau=1e-3)
    _, adam_state = step(ServerOptState("fedadam", 1, state.m, np.full(2, v1)), first, small, adam)
    assert adam_state.v is not None and adam_state.v[0] != pytest.approx(state.v[0], rel=1e-6)


def test_the_adaptive_state_starts_at_tau_squared():
    state = initial_state(ServerOptParams("fedadam", tau=0.01), 3)
    assert state.v is not None and state.v.tolist() == pytest.approx([1e-4] * 3)
    assert state.m is not None and not state.m.any()


@pytest.mark.parametrize("optimizer", SERVER_OPTIMIZERS)
def test_two_nodes_with_the_same_history_compute_the_same_digest(optimizer):
    rng = np.random.default_rng(5)
    history = [rng.normal(size=200) for _ in range(5)]
    params = ServerOptParams(optimizer, lr=0.3, momentum=0.8, tau=1e-2, alpha=0.01)

    def node() -> str:
        model, state = np.array(history[0]), None
        for average in history[1:]:
            # each node holds its own copies, as it would after decrypting
            model, state = step(state, model.copy(), np.array(average), params)
        return model_digest(model)

    assert node() == node()


def test_feddyn_adds_the_running_drift_to_the_average_as_acar_et_al_algorithm_1():
    params = ServerOptParams("feddyn", alpha=0.01)
    first, state = step(None, BASE, AVERAGE, params)
    # h = 0 - 0.01 * d = [-0.005, 0.005]; x' = a - h / 0.01 = a + d = [2.0, -3.0]
    assert state.m is not None and state.m.tolist() == [-0.005, 0.005]
    assert first.tolist() == [2.0, -3.0]
    # A second round whose average is its base adds nothing new: h stays, x' = a + (sum d)
    second, state = step(state, first, first.copy(), params)
    assert second.tolist() == [2.5, -3.5] and state.steps == 2


def test_feddyn_without_alpha_is_refused():
    with pytest.raises(ValueError, match=r"feddyn needs alpha \(fedprox_mu\) > 0"):
        ServerOptParams("feddyn")


def test_a_state_of_another_optimiser_or_length_starts_afresh():
    params = ServerOptParams("fedavgm", lr=1.0, momentum=0.9)
    stale = ServerOptState("fedavgm", 4, np.full(5, 100.0))
    fresh, _ = step(None, BASE, AVERAGE, params)
    assert step(stale, BASE, AVERAGE, params)[0].tolist() == fresh.tolist()
    adam = ServerOptState("fedadam", 4, np.full(2, 100.0), np.ones(2))
    assert step(adam, BASE, AVERAGE, params)[0].tolist() == fresh.tolist()


def test_an_unknown_optimiser_is_refused_by_name():
    with pytest.raises(ValueError, match=r"fedavg, fedavgm, fedadam, fedyogi, feddyn.*'sgd'"):
        ServerOptParams("sgd")


def test_a_base_and_average_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="must be equal 1-D vectors"):
        step(None, np.zeros(3), np.zeros(4), ServerOptParams("fedadam"))


def test_the_digest_is_sha256_of_the_little_endian_float64_bytes():
    weights = np.array([1.0, -0.5], dtype=np.float32)
    expected = hashlib.sha256(np.array([1.0, -0.5], dtype="<f8").tobytes()).hexdigest()
    assert model_digest(weights) == expected
    assert model_digest(np.array([1.0, -0.5 + 1e-15])) != expected

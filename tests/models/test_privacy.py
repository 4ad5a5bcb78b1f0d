"""DP-SGD with Opacus: noise calibration, the accountant across rounds, clipping, budgets."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant
from opacus.validators.errors import UnsupportedModuleError
from torch import nn

from models.metrics import auprc
from models.nets import FraudMLP, build_model
from models.privacy import (
    EPSILON_TOLERANCE,
    DPConfig,
    PrivacyBudgetExceeded,
    epsilon_after,
    noise_multiplier_for,
    plan_round,
    poisson_schedule,
    record_gaussian_release,
    train_local_dp,
    would_exceed,
)
from models.training import predict_scores, train_local
from models.vector import model_to_vector

SPEC = {"kind": "mlp", "hidden": [16], "seed": 3, "pos_weight": 5.0}


def easy_problem(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """About 7% positives, separable up to a little label noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, (x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=n) > 1.7).astype(np.float32)


def dp_config(**overrides: Any) -> DPConfig:
    settings: dict[str, Any] = {
        "target_epsilon": 8.0,
        "delta": 1e-4,
        "max_grad_norm": 1.0,
        "planned_rounds": 3,
        "local_epochs": 1,
        "batch_size": 50,
    }
    return DPConfig(**{**settings, **overrides})


def train(
    model: FraudMLP, x: np.ndarray, y: np.ndarray, dp: DPConfig, state: Any, seed: int | None = 0
) -> tuple[int, float, dict[str, Any]]:
    return train_local_dp(
        model, x, y, epochs=dp.local_epochs, batch_size=dp.batch_size, lr=1e-2,
        seed=seed, dp=dp, accountant_state=state,
    )  # fmt: skip


def opacus_epsilon(history: list[tuple[float, float, int]], delta: float) -> float:
    accountant = RDPAccountant()
    accountant.history = history
    return accountant.get_epsilon(delta=delta)


@pytest.mark.parametrize(
    ("target", "sample_rate", "steps"), [(8.0, 0.02, 600), (2.0, 0.05, 300), (1.0, 0.01, 2000)]
)
def test_the_derived_noise_multiplier_spends_the_target_epsilon_over_all_planned_steps(
    target: float, sample_rate: float, steps: int
) -> None:
    sigma = noise_multiplier_for(target, 1e-5, sample_rate, steps)
    spent = opacus_epsilon([(sigma, sample_rate, steps)], 1e-5)
    assert target - EPSILON_TOLERANCE <= spent <= target
    # Less noise would overspend: the multiplier is not merely "large enough".
    assert opacus_epsilon([(sigma * 0.97, sample_rate, steps)], 1e-5) > target


def test_a_round_plan_covers_every_planned_round_with_one_noise_multiplier() -> None:
    dp = dp_config(planned_rounds=4, local_epochs=2)
    plan = plan_round(dp, n_samples=1000)
    assert (plan.sample_rate, plan.steps) == (1 / 20, 2 * 20)
    total = opacus_epsilon([(plan.noise_multiplier, plan.sample_rate, 4 * plan.steps)], dp.delta)
    assert 8.0 - EPSILON_TOLERANCE <= total <= 8.0


def test_the_planned_schedule_is_what_opacus_records_even_where_floats_round_down() -> None:
    # ceil(930 / 10) = 93 loader batches, and int(1 / (1 / 93)) == 92 in floating point.
    assert poisson_schedule(930, 10) == (1 / 92, 92)
    dp = dp_config(batch_size=10)
    x, y = easy_problem(930)
    _, _, state = train(build_model(SPEC, 4), x, y, dp, None)
    plan = plan_round(dp, 930)
    assert state["history"] == [[plan.noise_multiplier, plan.sample_rate, plan.steps]]


def test_epsilon_grows_every_round_and_stays_within_the_target_over_the_planned_rounds() -> None:
    dp = dp_config()
    x, y = easy_problem(400)
    model, state, spent = build_model(SPEC, 4), None, [0.0]
    for number in range(dp.planned_rounds):
        _, epsilon, state = train(model, x, y, dp, state, seed=number)
        spent.append(epsilon)
    assert all(a < b for a, b in itertools.pairwise(spent))
    assert 8.0 - EPSILON_TOLERANCE <= spent[-1] <= 8.0
    assert epsilon_after(state, dp.delta) == spent[-1]


def test_a_restored_accountant_continues_exactly_where_the_last_round_stopped() -> None:
    dp = dp_config()
    x, y = easy_problem(400)
    model = build_model(SPEC, 4)
    _, first, state = train(model, x, y, dp, None, seed=1)
    restored = json.loads(json.dumps(state))  # a new process reads what the last one wrote
    _, second, state = train(model, x, y, dp, restored, seed=2)

    one_go = RDPAccountant()  # one accountant stepping through both rounds in one process
    plan = plan_round(dp, 400)
    for _ in range(2 * plan.steps):
        one_go.step(noise_multiplier=plan.noise_multiplier, sample_rate=plan.sample_rate)
    assert [tuple(entry) for entry in state["history"]] == one_go.history
    assert second == one_go.get_epsilon(delta=dp.delta) > first


def test_dp_training_still_learns_an_easy_problem_but_not_like_plain_training() -> None:
    dp = dp_config(target_epsilon=8.0, planned_rounds=1, local_epochs=5, batch_size=100)
    x, y = easy_problem(3000)
    x_test, y_test = easy_problem(2000, seed=1)
    initial = model_to_vector(build_model(SPEC, 4))

    private = build_model(SPEC, 4)
    n, epsilon, _ = train(private, x, y, dp, None)
    plain = build_model(SPEC, 4)
    train_local(plain, x, y, epochs=5, batch_size=100, lr=1e-2)

    assert n == 3000 and epsilon <= 8.0
    assert auprc(y_test, predict_scores(private, x_test)) > 0.6 > 5 * y_test.mean()
    weights = model_to_vector(private)
    assert not np.allclose(weights, initial)
    assert not np.allclose(weights, model_to_vector(plain), atol=1e-3)


class RecordingSGD(torch.optim.SGD):
    """Plain SGD that records the norm of the gradient it is handed at each step."""

    def __init__(self, params: Any, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.grad_norms: list[float] = []

    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:  # Lightning computes the gradients inside the closure
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad.reshape(-1) for group in self.param_groups for p in group["params"]]
        self.grad_norms.append(float(torch.cat(grads).norm()))
        super().step()
        return loss


class RecordingMLP(FraudMLP):
    """FraudMLP with SGD and a record of each training batch's size."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_sizes: list[int] = []
        self.recorder: RecordingSGD | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.batch_sizes.append(len(x))
        return super().forward(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        self.recorder = RecordingSGD(self.parameters(), lr=0.1)
        return self.recorder


@pytest.mark.parametrize("max_grad_norm", [1e-3, 1e-2])
def test_each_step_moves_the_model_by_at_most_the_clip_norm_per_expected_row(
    max_grad_norm: float,
) -> None:
    dp = dp_config(target_epsilon=None, noise_multiplier=0.0, max_grad_norm=max_grad_norm,
                   local_epochs=2, batch_size=64)  # fmt: skip
    x, y = easy_problem(640)
    model = RecordingMLP(n_features=4, hidden=(16,), pos_weight=5.0, seed=3)
    _, epsilon, _ = train(model, x, y, dp, None)
    assert model.recorder is not None
    norms = np.array(model.recorder.grad_norms)
    sizes = np.array(model.batch_sizes)
    assert len(norms) == len(sizes) == 20 and math.isinf(epsilon)
    # Every row's gradient is clipped to C, then summed and divided by the expected batch.
    bound = max_grad_norm * sizes / 64
    assert np.all(norms <= bound * (1 + 1e-4))
    assert np.median(norms / bound) > 0.5  # clipping shrinks, it does not zero out

    unclipped = RecordingMLP(n_features=4, hidden=(16,), pos_weight=5.0, seed=3)
    train_local(unclipped, x, y, epochs=1, batch_size=64)
    assert unclipped.recorder is not None
    assert np.median(unclipped.recorder.grad_norms) > 10 * max_grad_norm


def test_fedprox_still_pulls_dp_training_towards_the_global_weights() -> None:
    dp = dp_config(local_epochs=3)
    x, y = easy_problem(400)
    distances = []
    for mu in (0.0, 5.0):
        model = build_model({**SPEC, "fedprox_mu": mu}, 4)
        start = model_to_vector(model)
        model.set_fedprox_reference(start)
        train(model, x, y, dp, None, seed=4)  # same batches and noise for both
        distances.append(np.linalg.norm(model_to_vector(model) - start))
    assert distances[1] < 0.5 * distances[0]


def test_would_exceed_turns_true_exactly_when_the_planned_rounds_are_used_up() -> None:
    dp = dp_config(planned_rounds=3)
    x, y = easy_problem(400)
    model, state = build_model(SPEC, 4), None
    for _ in range(3):
        assert not would_exceed(state, dp, n_samples=400)
        _, _, state = train(model, x, y, dp, state)
    assert would_exceed(state, dp, n_samples=400)

    before = model_to_vector(model)
    with pytest.raises(PrivacyBudgetExceeded, match=r"past the target 8\.0"):
        train(model, x, y, dp, state)
    np.testing.assert_array_equal(model_to_vector(model), before)


def test_without_a_target_the_budget_never_stops_training() -> None:
    dp = dp_config(target_epsilon=None, noise_multiplier=1.0)
    state = {"format": "consortium-dp-accountant/1", "mechanism": "rdp",
             "history": [[1.0, 0.1, 100_000]]}  # fmt: skip
    assert not would_exceed(state, dp, n_samples=400)
    assert epsilon_after(state, 1e-5) > 50
    assert epsilon_after(None, 1e-5) == 0.0


def test_the_model_comes_back_plain_and_trains_again() -> None:
    dp = dp_config()
    x, y = easy_problem(400)
    model = build_model(SPEC, 4)
    _, _, state = train(model, x, y, dp, None)
    for layer in model.net.modules():
        assert not layer._forward_hooks and not layer._backward_hooks
    for param in model.parameters():
        assert param.grad is None
        assert not any(hasattr(param, a) for a in ("grad_sample", "summed_grad"))
    assert not hasattr(model.net, "autograd_grad_sample_hooks")
    first = model_to_vector(model)
    train(model, x, y, dp, state, seed=1)  # Opacus refuses to hook a module twice
    assert not np.array_equal(model_to_vector(model), first)


def test_the_same_seed_gives_the_same_weights_and_no_seed_gives_fresh_noise() -> None:
    dp = dp_config()
    x, y = easy_problem(400)
    runs = []
    for seed in (7, 7, None):
        model = build_model(SPEC, 4)
        train(model, x, y, dp, None, seed=seed)
        runs.append(model_to_vector(model))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])


def test_a_model_with_a_layer_opacus_cannot_handle_is_refused() -> None:
    model = build_model(SPEC, 4)
    model.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 1))
    x, y = easy_problem(400)
    with pytest.raises(UnsupportedModuleError):
        train(model, x, y, dp_config(), None)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"target_epsilon": 0.0}, "target_epsilon"),
        ({"target_epsilon": math.inf}, "target_epsilon"),
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.0}, "delta"),
        ({"max_grad_norm": 0.0}, "max_grad_norm"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"noise_multiplier": -0.5}, "noise_multiplier"),
        ({"noise_multiplier": math.nan}, "noise_multiplier"),
        ({"planned_rounds": 0}, "planned_rounds"),
        ({"local_epochs": 0}, "local_epochs"),
        ({"local_epochs": 1.5}, "local_epochs"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_an_invalid_config_is_refused_naming_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        dp_config(**overrides)


def test_a_delta_not_below_one_over_the_row_count_is_refused() -> None:
    dp = dp_config(delta=1 / 400)
    x, y = easy_problem(400)
    with pytest.raises(ValueError, match=r"delta=0.0025 must be below 1/n_samples = 1/400"):
        train(build_model(SPEC, 4), x, y, dp, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dp": DPConfig(target_epsilon=None)}, "no privacy"),
        ({"epochs": 2}, "local_epochs=1"),
        ({"batch_size": 10}, "batch_size=50"),
    ],
)
def test_training_refuses_a_config_it_cannot_honour(kwargs: dict, message: str) -> None:
    x, y = easy_problem(400)
    call = {"epochs": 1, "batch_size": 50, "lr": 1e-2, "seed": 0, "dp": dp_config(),
            "accountant_state": None, **kwargs}  # fmt: skip
    with pytest.raises(ValueError, match=message):
        train_local_dp(build_model(SPEC, 4), x, y, **call)


@pytest.mark.parametrize(
    "state",
    [
        {"format": "something-else/1", "mechanism": "rdp", "history": []},
        {"format": "consortium-dp-accountant/1", "mechanism": "prv", "history": []},
        {"format": "consortium-dp-accountant/1", "mechanism": "rdp", "history": [[1.0, 0.1]]},
        {"format": "consortium-dp-accountant/1", "mechanism": "rdp", "history": [[1.0, 2.0, 5]]},
        {"format": "consortium-dp-accountant/1", "mechanism": "rdp", "history": [[1.0, 0.1, -5]]},
        {"format": "consortium-dp-accountant/1", "mechanism": "rdp", "history": [["1", 0.1, 5]]},
    ],
)
def test_a_damaged_accountant_state_is_refused_rather_than_read_as_less_spending(
    state: dict,
) -> None:
    with pytest.raises(ValueError, match="accountant"):
        epsilon_after(state, 1e-5)


def test_a_policy_snapshot_becomes_a_config_planned_over_its_max_rounds() -> None:
    policy = {"max_rounds": 10, "local_epochs": 2, "batch_size": 128,
              "dp_target_epsilon": 4, "dp_delta": 1e-6, "dp_max_grad_norm": 0.5}  # fmt: skip
    dp = DPConfig.from_policy(policy)
    assert dp == DPConfig(target_epsilon=4.0, delta=1e-6, max_grad_norm=0.5,
                          planned_rounds=10, local_epochs=2, batch_size=128)  # fmt: skip
    assert not DPConfig.from_policy({"max_rounds": 3, "local_epochs": 1, "batch_size": 8}).enabled


def test_a_gaussian_release_outside_dp_sgd_composes_with_the_rounds_in_one_budget() -> None:
    # The classical sigma for (1, 1e-6)-DP at sensitivity 1: one release spends at most 1.
    z = math.sqrt(2 * math.log(1.25e6))
    once = record_gaussian_release(None, z)
    assert once["history"] == [[z, 1.0, 1]]
    assert 0.5 < epsilon_after(once, 1e-6) <= 1.0
    twice = record_gaussian_release(once, z)
    assert twice["history"] == [[z, 1.0, 2]]  # merged, as Opacus merges equal steps
    assert epsilon_after(twice, 1e-6) > epsilon_after(once, 1e-6)
    with pytest.raises(ValueError, match="positive"):
        record_gaussian_release(once, 0.0)

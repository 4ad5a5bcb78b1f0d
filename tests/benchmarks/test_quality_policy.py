"""benchmarks/quality.py builds a policy snapshot the protocol accepts."""

from __future__ import annotations

import dataclasses
from types import ModuleType

import numpy as np

from bank_node.server_chain import server_params
from bank_node.training import LocalData, train_round
from he.codec import TRAILER_SLOTS
from models.federation import fedavg, run_fedavg
from models.nets import initial_vector
from models.server_opt import step
from models.vector import vector_length
from protocol import PolicySnapshot


def test_the_quality_benchmarks_policy_is_valid_and_carries_its_hyperparameters(
    quality: ModuleType, quality_columns: ModuleType
) -> None:
    policy = quality_columns.policy_of(quality.HYPER)
    assert PolicySnapshot.from_dict(policy.to_dict()) == policy
    for key in ("model_spec", "local_epochs", "batch_size", "learning_rate", "fedprox_mu"):
        assert getattr(policy, key) == quality.HYPER[key], key
    parameters = vector_length(quality_columns.fresh_model(quality.HYPER))
    assert policy.vector_length == parameters + TRAILER_SLOTS


def _views() -> list[LocalData]:
    rng = np.random.default_rng(4)
    views = []
    for shift, rows in ((0.0, 300), (1.0, 500)):
        x = rng.normal(shift, 1.0, size=(rows, 4)).astype(np.float32)
        y = (x[:, 0] > shift + 0.8).astype(np.float32)
        views.append(LocalData(x, y, x, y, x, y))
    return views


def _policy(quality_columns: ModuleType, optimizer: str) -> PolicySnapshot:
    hyper = {"rounds": 2, "local_epochs": 1, "batch_size": 64, "learning_rate": 3e-3,
             "fedprox_mu": 0.01, "server_optimizer": optimizer,
             "model_spec": {"kind": "mlp", "hidden": [8], "seed": 7}}  # fmt: skip
    policy = quality_columns.policy_of(hyper)
    assert policy.server_optimizer == optimizer
    return dataclasses.replace(policy, n_features=4)


def test_the_in_process_federation_under_fedavg_is_plain_fedavg(quality_columns: ModuleType):
    views, policy = _views(), _policy(quality_columns, "fedavg")

    def train(party: int, base: np.ndarray | None, number: int) -> tuple[np.ndarray, int]:
        return train_round(views[party], policy, base, seed=number)

    expected = run_fedavg(train, 2, 2, first_round=2)[-1]
    np.testing.assert_array_equal(quality_columns.federate(views, policy, 2, 2), expected)


def test_the_in_process_federation_under_feddyn_steps_as_every_node_does(
    quality_columns: ModuleType,
):
    views, policy = _views(), _policy(quality_columns, "feddyn")
    start = initial_vector(policy.model_spec, 4)
    average = fedavg([train_round(v, policy, start, 2) for v in views])
    first, _ = step(None, start, average, server_params(policy))  # h = 0 in the first round
    np.testing.assert_array_equal(quality_columns.federate(views, policy, 1, 2), first)
    assert not np.array_equal(first, average)

"""benchmarks/quality.py builds a policy snapshot the protocol accepts."""

from __future__ import annotations

from types import ModuleType

from he.codec import TRAILER_SLOTS
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

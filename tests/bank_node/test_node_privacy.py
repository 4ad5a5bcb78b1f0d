"""A node under a DP policy reports its epsilon and stops before overspending."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bank_node.agent import Agent
from bank_node.config import NodeConfig
from bank_node.keys import (
    PARAMS,
    SECRET_CONTEXT,
    SIGNING_KEY,
    ckks_keygen,
    keyring_load,
    signing_keygen,
)
from he.params import CkksParams
from models.features import FEATURE_NAMES
from models.privacy import PrivacyBudgetExceeded
from protocol import RoundInfo
from simulation.world import generate_world
from tests.protocol.messages import policy_dict, round_dict


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, n_banks=2, preset="tiny", seed=5)
    return out


def _agent(tmp_path: Path, data_file: Path) -> Agent:
    ckks_keygen(tmp_path, CkksParams())
    signing_keygen(tmp_path)
    config = NodeConfig(
        portal_url="http://127.0.0.1:9",
        bank="1",
        credential_file=tmp_path / "none",
        signing_key_file=tmp_path / SIGNING_KEY,
        secret_context_file=tmp_path / SECRET_CONTEXT,
        ckks_params_file=tmp_path / PARAMS,
        data_file=data_file,
        state_dir=tmp_path / "state",
    )
    keys = keyring_load(
        config.secret_context_file, config.ckks_params_file, config.signing_key_file
    )
    return Agent(config, keys, client=None)  # type: ignore[arg-type]  # no HTTP in this test


def _round(number: int) -> RoundInfo:
    policy = policy_dict(
        model_spec={"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"},
        n_features=len(FEATURE_NAMES),
        local_epochs=1,
        batch_size=512,
        learning_rate=3e-3,
        fedprox_mu=0.0,
        max_rounds=1,
        dp_target_epsilon=3.0,
        dp_delta=1e-5,
        dp_max_grad_norm=1.0,
        dp_noise_multiplier=None,
    )
    return RoundInfo.from_dict(
        round_dict(number=number, policy=policy, stats_round=None, base_round=None)
    )


def test_a_node_reports_cumulative_epsilon_and_refuses_a_round_past_its_budget(tmp_path, world):
    agent = _agent(tmp_path, world / "bank_1.csv")
    weights, n, privacy = agent.local_update(_round(1))
    assert n > 0 and weights.size > 0
    assert privacy is not None and privacy.epsilon is not None
    assert 0 < privacy.epsilon <= 3.0 + 1e-6
    assert privacy.budget_left is False  # the plan was one round
    assert agent.state.epsilon == privacy.epsilon and agent.state.dp_accountant
    reloaded = type(agent.state).load(agent.state_path)
    assert reloaded.dp_accountant == agent.state.dp_accountant
    with pytest.raises(PrivacyBudgetExceeded, match="stops contributing"):
        agent.local_update(_round(2))


def test_a_node_holding_another_key_sits_the_round_out_and_says_why(tmp_path, world):
    agent = _agent(tmp_path, world / "bank_1.csv")
    rnd = dataclasses.replace(_round(7), key_epoch="e" * 64)
    assert agent.participate(rnd) is False  # returns before any training or HTTP
    reason = agent.state.skipped["7"]
    assert "install the current consortium key" in reason and "eeeeeeeeeeeeeeee" in reason
    assert "7" not in agent.state.submitted
    assert type(agent.state).load(agent.state_path).skipped["7"] == reason

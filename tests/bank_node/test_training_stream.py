"""A node that streams its training: the Parquet features' training period, moments, a round."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bank_node.agent import Agent
from bank_node.baseline import default_policy
from bank_node.checks import Refused
from bank_node.config import Evaluation, NodeConfig, load_config
from bank_node.config_training import TrainingConfig
from bank_node.keys import (
    PARAMS,
    SECRET_CONTEXT,
    SIGNING_KEY,
    ckks_keygen,
    keyring_load,
    signing_keygen,
)
from bank_node.stream_periods import training_reference
from bank_node.training import Normalizer, evaluate, feature_moments, local_data
from bank_node.training_stream import (
    check_streamable,
    held_out,
    node_evaluate,
    node_moments,
    node_train_round,
    streamed_data,
)
from he.params import CkksParams
from models.drift import reference_from
from models.features import FEATURE_NAMES
from models.nets import build_model, initial_vector
from models.stream_data import count_rows
from models.training import predict_scores
from protocol import PolicySnapshot, RoundInfo
from simulation.world import generate_world
from tests.bank_node.serve_helpers import write_node_config
from tests.protocol.messages import policy_dict, round_dict, sketch_dict

STREAM = TrainingConfig(data="stream", accelerator="cpu", buffer_rows=4096)


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """These tests touch no Django (the repo-wide fixture of this name needs it)."""


@pytest.fixture(scope="module")
def bank_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny_world")
    manifest: dict[str, Any] = generate_world(out, preset="tiny", seed=0)
    return out / manifest["banks"]["3"]["file"]


@pytest.fixture
def node(bank_file: Path, tmp_path: Path) -> NodeConfig:
    return dataclasses.replace(load_config(write_node_config(tmp_path, bank_file)), training=STREAM)


@pytest.mark.parametrize(
    "evaluation",
    [Evaluation(), Evaluation(train_before=date(2022, 10, 10), evaluate_from=date(2022, 10, 12))],
)
@pytest.mark.parametrize("engine", ["duckdb", "numpy"])
def test_the_streamed_training_period_holds_the_in_memory_training_rows(
    node: NodeConfig, evaluation: Evaluation, engine: str
) -> None:
    training = dataclasses.replace(STREAM, engine=engine)
    node = dataclasses.replace(node, evaluation=evaluation, training=training)
    memory = local_data(node.data_file, evaluation)
    streamed = streamed_data(node)
    assert count_rows(streamed.spec(STREAM)) == len(memory.y_train) > 0
    moments, rows = node_moments(node)
    expected, expected_rows = feature_moments(memory)
    assert rows == expected_rows
    # DuckDB's features equal pandas' within one float32 ulp (docs/scale.md), numpy's exactly;
    # the moments are sums in another order than the in-memory ones.
    np.testing.assert_allclose(moments, expected, rtol=1e-5, atol=1e-7)


def test_a_streamed_round_trains_the_policys_model_on_the_training_rows(node: NodeConfig) -> None:
    policy = default_policy()
    moments, rows = node_moments(node)
    norm = Normalizer.from_moments(moments, 1, rows)
    weights, n = node_train_round(node, policy, None, 3, norm)
    start = initial_vector(policy.model_spec, policy.n_features)
    assert n == rows and weights.shape == start.shape
    assert np.isfinite(weights).all() and np.abs(weights - start).max() > 1e-4


def test_a_dp_policy_is_refused_when_the_node_streams(node: NodeConfig) -> None:
    policy = dataclasses.replace(default_policy(), dp_target_epsilon=8.0)
    with pytest.raises(Refused, match=r"DP-SGD samples from rows held in memory"):
        node_train_round(node, policy, None, 3, None)


def _streaming_agent(node: NodeConfig, tmp_path: Path) -> Agent:
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    ckks_keygen(keys_dir, CkksParams())
    signing_keygen(keys_dir)
    config = dataclasses.replace(
        node,
        signing_key_file=keys_dir / SIGNING_KEY,
        secret_context_file=keys_dir / SECRET_CONTEXT,
        ckks_params_file=keys_dir / PARAMS,
    )
    keys = keyring_load(
        config.secret_context_file, config.ckks_params_file, config.signing_key_file
    )
    return Agent(config, keys, client=None)  # type: ignore[arg-type]  # no HTTP in this test


def test_a_streaming_node_answers_a_statistics_round_without_loading_its_file(
    node: NodeConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = _streaming_agent(node, tmp_path)

    def in_memory(*args: object) -> None:
        raise AssertionError("a streaming node read its whole file")

    monkeypatch.setattr("bank_node.agent.local_data", in_memory)
    rnd = RoundInfo.from_dict(round_dict(kind="statistics", stats_round=None, base_round=None))
    moments, n, claim = agent.local_update(rnd)
    expected, rows = node_moments(node)
    assert claim is None and n == rows
    np.testing.assert_array_equal(moments, expected)


@pytest.mark.parametrize(
    "changes",
    [{"feature_set": "card-v1"}, {"counterparty_sketch": sketch_dict()}],
    ids=["card feature set", "cross-bank sketch"],
)
def test_streamed_training_refuses_a_policy_whose_features_it_does_not_compute(
    changes: dict[str, Any],
) -> None:
    check_streamable(PolicySnapshot.from_dict(policy_dict()))  # the account-history set: fine
    with pytest.raises(Refused, match='set \\[training\\] data = "memory"') as refused:
        check_streamable(PolicySnapshot.from_dict(policy_dict(**changes)))
    assert refused.value.reason == "stream_unsupported"


def _norm(node: NodeConfig) -> Normalizer:
    moments, rows = node_moments(node)
    return Normalizer.from_moments(moments, 1, rows)


@pytest.mark.parametrize(
    "evaluation",
    [Evaluation(), Evaluation(train_before=date(2022, 10, 10), evaluate_from=date(2022, 10, 12))],
)
def test_a_streaming_node_scores_the_in_memory_held_out_rows_in_their_order(
    node: NodeConfig, evaluation: Evaluation, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = dataclasses.replace(node, evaluation=evaluation)
    memory = local_data(node.data_file, evaluation).normalized(_norm(node))
    policy = default_policy()
    torch.manual_seed(4)
    net = build_model(policy.model_spec, policy.n_features)

    def in_memory(*args: object, **kwargs: object) -> None:
        raise AssertionError("a streaming node read its whole file")

    monkeypatch.setattr("bank_node.training.local_data", in_memory)
    monkeypatch.setattr("bank_node.data.load_transactions", in_memory)
    val, test = held_out(node, [net], _norm(node))
    # The same rows, labelled alike, in the same order (time, ties in file order).
    assert len(val.labels) == len(memory.y_val) > 0 and len(test.labels) == len(memory.y_test) > 0
    np.testing.assert_array_equal(val.labels, memory.y_val)
    np.testing.assert_array_equal(test.labels, memory.y_test)
    np.testing.assert_allclose(test.scores[0], predict_scores(net, memory.x_test), atol=1e-5)

    streamed = node_evaluate(node, net, _norm(node))
    expected = evaluate(net, memory)
    assert streamed.keys() == expected.keys() and streamed["test_rows"] == expected["test_rows"]
    for name, value in expected.items():
        assert streamed[name] == pytest.approx(value, abs=1e-4), name


def test_the_streamed_drift_reference_bins_every_training_row(node: NodeConfig) -> None:
    policy = default_policy()
    torch.manual_seed(5)
    net = build_model(policy.model_spec, policy.n_features)
    memory = local_data(node.data_file, node.evaluation)
    norm = _norm(node)
    exact = reference_from(
        memory.x_train, predict_scores(net, norm.apply(memory.x_train)), FEATURE_NAMES
    )
    spec = streamed_data(node).spec(STREAM, shuffle=False)
    whole = training_reference(spec, net, norm, FEATURE_NAMES)
    assert whole is not None
    # With every row in the sample, the edges are the in-memory edges.
    for mine, theirs in zip(whole.edges, exact.edges, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    sampled = training_reference(spec, net, norm, FEATURE_NAMES, sample_rows=500)
    assert sampled is not None
    rows = len(memory.y_train)
    # Edges from 500 rows, counts over all of them: every row binned once per feature.
    assert {int(c.sum()) for c in sampled.counts} == {rows} and sampled.score_counts.sum() == rows
    # Deciles from a sample stay deciles: no bin of the score holds twice its share.
    assert sampled.score_counts.max() <= 2 * rows / len(sampled.score_counts)

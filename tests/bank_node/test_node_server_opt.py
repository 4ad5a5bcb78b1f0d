"""Server optimisers with real nodes and real CKKS: every node produces the same stepped model,
trains from it, reports its digest, and the gate scores it.

The federation (three agents, one consortium key, a fake portal that sums their uploads as
the scheduler does) is test_node_influence.py's.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bank_node.agent import Agent
from bank_node.feddyn import STATE_FILE
from bank_node.keys import PUBLIC_CONTEXT
from bank_node.server_chain import server_params
from bank_node.training import model_from_vector
from he.codec import TRAILER_SLOTS
from models.gate import GATE_VECTOR_LENGTH, gate_vector
from models.nets import initial_vector
from models.server_opt import model_digest, step
from models.training import predict_scores
from protocol import RoundInfo
from tests.bank_node.test_node_influence import (
    CLIP,
    FEATURES,
    SPEC,
    Portal,
    keys_dir,
    make_agents,
    policy,
    training,
    world,
)
from tests.protocol.messages import round_dict

__all__ = ["keys_dir", "world"]  # module fixtures this file shares

MOMENTUM = {"server_optimizer": "fedavgm", "server_lr": 1.5, "server_momentum": 0.5}


class DigestPortal(Portal):
    """The federation's portal, also keeping the model digests nodes report."""

    def __init__(self, tmp: Path, public: Path) -> None:
        super().__init__(tmp, public)
        self.digests: dict[int, list[str]] = {}

    def report_metrics(self, number: int, metrics: dict[str, Any], model_digest: str = "") -> None:
        self.digests.setdefault(number, []).append(model_digest)


@pytest.fixture
def federation(tmp_path: Path, world: Path, keys_dir: Path) -> tuple[list[Agent], DigestPortal]:
    portal = DigestPortal(tmp_path, keys_dir / PUBLIC_CONTEXT)
    return make_agents(tmp_path, world, keys_dir, portal), portal


def _play(agents: list[Agent], portal: DigestPortal, rnd: RoundInfo) -> None:
    """Every node trains and uploads, the portal publishes, every node evaluates."""
    portal.open = rnd
    for agent in agents:
        assert agent.participate(rnd) is True
    portal.publish(rnd, agents[0].keys.params)
    for agent in agents:
        agent.step()
        assert str(rnd.number) in agent.state.evaluated, agent.state.refused


def _served(agent: Agent) -> np.ndarray:
    return np.load(agent.config.state_dir / "global_model.npy")


def test_every_node_produces_trains_from_and_reports_the_same_stepped_model(
    federation: tuple[list[Agent], DigestPortal],
) -> None:
    agents, portal = federation
    fp = agents[0].keys.fingerprint
    first = training(1, fp, policy=policy(update_clip_norm=CLIP, **MOMENTUM))
    _play(agents, portal, first)

    params = server_params(first.policy)
    average, _ = agents[0].global_weights(1, fp)
    by_hand, state = step(None, initial_vector(SPEC, FEATURES), average, params)
    assert np.array_equal(_served(agents[0]), by_hand)
    assert not np.array_equal(by_hand, average)  # the step did move past the average
    assert portal.digests[1] == [model_digest(by_hand)] * len(agents)

    second = training(2, fp, base=1, policy=first.policy.to_dict())
    base = agents[1].base_weights(second)
    assert base is not None and np.array_equal(base, by_hand)  # trained from the step
    _play(agents, portal, second)  # the clip check measures from the stepped base: accepted
    average2, _ = agents[0].global_weights(2, fp)
    by_hand2, _ = step(state, by_hand, average2, params)
    assert all(np.array_equal(_served(agent), by_hand2) for agent in agents)
    assert portal.digests[2] == [model_digest(by_hand2)] * len(agents)


def test_under_feddyn_every_node_keeps_its_own_drift_and_they_produce_one_model(
    federation: tuple[list[Agent], DigestPortal],
) -> None:
    agents, portal = federation
    fp = agents[0].keys.fingerprint
    first = training(1, fp, policy=policy(server_optimizer="feddyn", fedprox_mu=0.05))
    _play(agents, portal, first)

    start = initial_vector(SPEC, FEATURES)
    average, _ = agents[0].global_weights(1, fp)
    by_hand, state = step(None, start, average, server_params(first.policy))
    assert all(np.array_equal(_served(agent), by_hand) for agent in agents)
    assert portal.digests[1] == [model_digest(by_hand)] * len(agents)
    # Each bank's h_k = -alpha (w_k - start), private; their row-weighted mean is the server's
    # h = -alpha (average - start), up to the CKKS error of the decrypted average.
    own, rows = [], []
    for agent in agents:
        path = agent.config.state_dir / STATE_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with np.load(path) as kept:
            assert int(kept["number"]) == 1 and not kept["before"].any()
            own.append(np.array(kept["after"]))
        rows.append(agent.round_data(first).y_train.size)
    assert not np.array_equal(own[0], own[1])
    assert state.m is not None
    np.testing.assert_allclose(np.average(own, axis=0, weights=rows), state.m, atol=1e-6)

    second = training(2, fp, base=1, policy=first.policy.to_dict())
    _play(agents, portal, second)  # each trains with -h_k against the stepped base
    for agent, h in zip(agents, own, strict=True):
        with np.load(agent.config.state_dir / STATE_FILE) as kept:
            assert int(kept["number"]) == 2 and np.array_equal(kept["before"], h)
    average2, _ = agents[0].global_weights(2, fp)
    by_hand2, _ = step(state, by_hand, average2, server_params(second.policy))
    assert portal.digests[2] == [model_digest(by_hand2)] * len(agents)


def test_under_feddyn_a_step_of_an_aborted_round_is_not_counted(
    federation: tuple[list[Agent], DigestPortal],
) -> None:
    """Round 2 is trained and uploaded by every bank but never published (aborted, say at
    its deadline); round 3 builds on round 1. Each bank trains round 3 from its h_k after
    round 1, not after round 2: the server's h never saw round 2's updates either."""
    agents, portal = federation
    fp = agents[0].keys.fingerprint
    first = training(1, fp, policy=policy(server_optimizer="feddyn", fedprox_mu=0.05))
    _play(agents, portal, first)
    after_first = []
    for agent in agents:
        with np.load(agent.config.state_dir / STATE_FILE) as kept:
            after_first.append(np.array(kept["after"]))
    aborted = training(2, fp, base=1, policy=first.policy.to_dict())
    portal.open = aborted
    for agent in agents:
        assert agent.participate(aborted) is True  # trained, its step saved, uploaded
        with np.load(agent.config.state_dir / STATE_FILE) as kept:
            assert int(kept["number"]) == 2 and kept["after"].any()
    portal.open = None  # never published
    third = training(3, fp, base=1, policy=first.policy.to_dict())
    _play(agents, portal, third)
    for agent, h in zip(agents, after_first, strict=True):
        with np.load(agent.config.state_dir / STATE_FILE) as kept:
            assert int(kept["number"]) == 3 and np.array_equal(kept["before"], h)
    assert len(set(portal.digests[3])) == 1  # and the nodes still agree on the model


def test_under_fedavg_a_node_serves_the_average_and_reports_no_digest(
    federation: tuple[list[Agent], DigestPortal],
) -> None:
    agents, portal = federation
    fp = agents[0].keys.fingerprint
    _play(agents, portal, training(1, fp))
    average, _ = agents[0].global_weights(1, fp)
    assert np.array_equal(_served(agents[0]), average)
    assert portal.digests == {}  # report_metrics is off and FedAvg has no digest to send


def test_the_gate_scores_the_stepped_candidate_not_the_raw_average(
    federation: tuple[list[Agent], DigestPortal],
) -> None:
    agents, portal = federation
    node, fp = agents[0], agents[0].keys.fingerprint
    gated = policy(update_clip_norm=CLIP, gate_tolerance=0.01, **MOMENTUM)
    _play(agents, portal, training(1, fp, policy=gated))
    evaluation = RoundInfo.from_dict(
        round_dict(
            number=2,
            kind="evaluation",
            candidate_round=1,
            vector_length=GATE_VECTOR_LENGTH + TRAILER_SLOTS,
            policy=gated,
            stats_round=None,
            base_round=None,
            base_key_epoch=None,
            key_epoch=fp,
        )
    )

    histograms, rows = node.gate.contribution(evaluation)

    average, _ = node.global_weights(1, fp)
    stepped, _ = step(
        None, initial_vector(SPEC, FEATURES), average, server_params(evaluation.policy)
    )
    data = node.data(evaluation.policy).normalized(None)
    cand, current, raw = (
        predict_scores(model_from_vector(SPEC, FEATURES, w), data.x_val)
        for w in (stepped, None, average)
    )
    counts = histograms * rows  # the node sent counts / rows: back to whole counts
    assert np.allclose(counts, gate_vector(cand, current, data.y_val), rtol=0, atol=1e-6)
    assert not np.allclose(counts, gate_vector(raw, current, data.y_val), rtol=0, atol=0.5)

"""The evaluation gate at the node, with real CKKS and real agents (docs/robustness.md).

Three banks' agents play two gated candidates through ``Agent.step``: round 1 (a trained
model, from the initial weights) gated by evaluation round 2, then round 3 (random
weights, from round 1) gated by evaluation round 4. The relaying portal sums their
uploads like the scheduler (``tests/bank_node/gate_nodes.py``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from bank_node.agent import Agent
from bank_node.checks import Refused
from bank_node.drift_state import reference_file
from bank_node.state import NodeState
from bank_node.training import local_data, model_from_vector, train_round
from governance import RosterState
from governance.verdict import GateVerdict, verify_verdict
from he.codec import STATS_COUNT_UNIT, decrypt_vector, encrypt_vector, pack_update
from he.keys import load_public_context
from models.features import FEATURE_NAMES
from models.gate import gate_vector
from models.training import predict_scores
from simulation.world import generate_world
from tests.bank_node.gate_nodes import (
    GATED_BANKS,
    N_FEATURES,
    PARAMS,
    SPEC,
    GatePortal,
    gate_agent,
    pinned_roster,
)
from tests.governance.roster_helpers import found

pytestmark = pytest.mark.filterwarnings("ignore")


@dataclasses.dataclass
class History:
    """Two gated candidates played by three nodes, and what the test needs to check them."""

    tmp: Path
    world: Path
    portal: GatePortal
    roster: RosterState
    agents: dict[str, Agent]
    trained: np.ndarray
    worse: np.ndarray
    decisions: dict[str, float]  # gate decisions counted while playing, by decision

    def data_file(self, bank: str) -> Path:
        return self.world / f"bank_{GATED_BANKS.index(bank) + 1}.csv"

    def fresh_agent(self, bank: str, home: str) -> Agent:
        """A node of ``bank`` that took part in nothing so far (a new state directory)."""
        data = self.data_file(bank) if bank in GATED_BANKS else self.data_file("alpha")
        return gate_agent(self.portal, bank, data, self.roster, self.tmp / home)


def _decisions() -> dict[str, float]:
    return {
        d: REGISTRY.get_sample_value("bank_node_gate_decisions_total", {"decision": d}) or 0.0
        for d in ("adopt", "reject")
    }


def _poll_all(agents: dict[str, Agent]) -> None:
    for agent in agents.values():
        agent.step()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, ckks: Any) -> History:
    tmp = tmp_path_factory.mktemp("gate")
    world = tmp / "world"
    generate_world(world, n_banks=3, preset="tiny", seed=5)
    ceremony = found()
    portal = GatePortal(tmp, ckks, ceremony, os.urandom(32))
    roster = pinned_roster(ceremony, ckks.fingerprint, portal.policy)
    agents = {
        bank: gate_agent(portal, bank, world / f"bank_{i + 1}.csv", roster, tmp / bank)
        for i, bank in enumerate(GATED_BANKS)
    }
    trained, _ = train_round(local_data(world / "bank_1.csv"), portal.policy, None, seed=1)
    worse = np.random.default_rng(0).normal(0.0, 1.0, trained.size)
    before = _decisions()

    portal.publish_candidate(1, trained)
    portal.open_evaluation(2, candidate=1, base=None)
    for agent in agents.values():
        agent.state.submitted["1"] = "11" * 32  # each took part in round 1: evaluates it
    _poll_all(agents)  # upload to round 2; round 1 evaluated, kept, not yet served
    portal.close_evaluation()
    _poll_all(agents)  # decide round 2: adopt round 1

    portal.publish_candidate(3, worse, base=1)
    portal.open_evaluation(4, candidate=3, base=1)
    _poll_all(agents)
    portal.close_evaluation()
    _poll_all(agents)  # decide round 4: reject round 3
    for agent in agents.values():
        agent.state.submitted["3"] = "33" * 32
    _poll_all(agents)  # round 3 evaluated after its rejection: kept, never served

    after = _decisions()
    decisions = {d: after[d] - before[d] for d in after}
    return History(tmp, world, portal, roster, agents, trained, worse, decisions)


def _pooled_histograms(history: History, candidate: np.ndarray, current: np.ndarray | None):
    """The four histograms over every bank's validation rows, computed here, not by a node."""
    total, rows = np.zeros(4 * 512), 0
    for bank in GATED_BANKS:
        data = local_data(history.data_file(bank))
        scores = [
            predict_scores(model_from_vector(SPEC, N_FEATURES, w), data.x_val)
            for w in (candidate, current)
        ]
        total += gate_vector(scores[0], scores[1], data.y_val)
        rows += int(data.y_val.size)
    return total, rows


def test_an_evaluation_rounds_uploads_sum_over_three_banks_to_the_pooled_histograms(history):
    portal = history.portal
    assert sorted(portal.uploads[2]) == list(GATED_BANKS)
    with open(portal.blobs[2], "rb") as stream:
        summed = decrypt_vector(portal.ckks.secret, stream, PARAMS)
    counts, rows = summed[:-2] * STATS_COUNT_UNIT, summed[-2] * STATS_COUNT_UNIT
    pooled, pooled_rows = _pooled_histograms(history, history.trained, None)

    assert round(rows) == pooled_rows  # the count slot: every bank's validation rows
    assert np.max(np.abs(counts - pooled)) < 0.05  # CKKS noise only
    assert np.array_equal(np.rint(counts), pooled)
    assert pooled[:512].sum() > 0  # the banks' validation rows hold frauds to rank


def test_a_better_candidate_is_adopted_and_becomes_every_nodes_served_model(history):
    assert history.decisions["adopt"] == len(GATED_BANKS)
    for agent in history.agents.values():
        verdict = agent.state.verdicts["1"]
        assert verdict["decision"] == "adopt" and verdict["round"] == 2
        assert verdict["candidate_auprc"] > verdict["current_auprc"]
        served = json.loads((agent.config.state_dir / "global_model.json").read_text())
        assert served["round"] == 1
        model = np.load(agent.config.state_dir / "global_model.npy")
        assert np.max(np.abs(model - history.trained)) < 1e-4


def test_a_worse_candidate_is_rejected_kept_on_disk_and_never_served(history):
    assert history.decisions["reject"] == len(GATED_BANKS)
    for agent in history.agents.values():
        state_dir = agent.config.state_dir
        verdict = NodeState.load(state_dir / "state.json").verdicts["3"]  # survives a restart
        assert verdict["decision"] == "reject"
        assert verdict["candidate_auprc"] < verdict["current_auprc"] - 0.005
        assert "3" in agent.state.evaluated  # evaluated on its own data all the same
        kept = np.load(state_dir / "candidate-round-3.npy")
        assert np.max(np.abs(kept - history.worse)) < 1e-4
        assert json.loads((state_dir / "global_model.json").read_text())["round"] == 1
        assert np.max(np.abs(np.load(state_dir / "global_model.npy") - history.trained)) < 1e-4


def test_the_registry_promotes_the_adopted_candidate_and_holds_the_rejected_one(history):
    for agent in history.agents.values():
        registry = agent.gate.registry.registry
        assert registry.names() == ["round-1", "round-3"] and registry.promoted() == "round-1"
        adopted, rejected = registry.passport("round-1"), registry.passport("round-3")
        assert adopted.adopted and adopted.held is None
        verdict = agent.state.verdicts["1"]
        assert adopted.consortium_auprc == verdict["candidate_auprc"]
        assert adopted.local_evaluation == agent.state.evaluated["1"]
        assert rejected.held == "rejected_by_gate" and not rejected.adopted


def test_every_node_posts_verdicts_that_verify_under_its_roster_key_and_nothing_else(history):
    portal = history.portal
    posted = [v for v in portal.verdicts if v[0] in GATED_BANKS and v[1] in (2, 4)]
    assert sorted((bank, n) for bank, n, _, _ in posted) == sorted(
        (bank, n) for bank in GATED_BANKS for n in (2, 4)
    )
    for bank, number, body, signature in posted:
        verdict = GateVerdict.from_dict(body)
        assert verdict.bank_id == bank and verdict.round_number == number
        assert verdict.candidate_round == number - 1
        assert verdict.aggregate_digest == portal.rounds[number].aggregate_digest
        assert verdict.consortium_id == history.roster.consortium_id
        public = portal.ceremony[bank].public
        assert verify_verdict(verdict, signature, public)
        flipped = dataclasses.replace(verdict, decision="reject" if verdict.adopt else "adopt")
        assert not verify_verdict(flipped, signature, public)
    assert portal.objections == []  # nothing refused along the way


def test_a_node_asked_to_train_from_a_rejected_base_refuses_with_base_not_adopted(history):
    agent, portal = history.agents["alpha"], history.portal
    rnd = portal.round_info(5, base_round=3)
    assert agent.participate(rnd) is False
    assert "rejected by this bank's evaluation gate" in agent.state.skipped["5"]
    assert 5 not in portal.uploads
    bank, objection, _ = portal.objections[-1]
    assert (bank, objection["round_number"], objection["reason_code"]) == (
        "alpha",
        5,
        "base_not_adopted",
    )
    portal.objections.clear()


def test_a_node_that_missed_the_evaluation_rounds_recomputes_their_verdicts(history):
    portal = history.portal
    late = history.fresh_agent("delta", "delta")  # a member that took part in nothing
    late.check_round(portal.round_info(5, base_round=1))  # adopted: no refusal
    assert late.state.verdicts["1"]["decision"] == "adopt"
    with pytest.raises(Refused) as refused:
        late.check_round(portal.round_info(6, base_round=3))
    assert refused.value.reason == "base_not_adopted"
    assert late.state.verdicts["3"]["decision"] == "reject"
    # Its own figures are the other members' figures: the same decrypted sum.
    assert (
        late.state.verdicts["3"]["candidate_auprc"]
        == (history.agents["alpha"].state.verdicts["3"]["candidate_auprc"])
    )
    assert [(b, n) for b, n, _, _ in portal.verdicts if b == "delta"] == [
        ("delta", 2),
        ("delta", 4),
    ]


def test_a_base_without_a_published_evaluation_round_is_not_trained_from(history):
    portal = history.portal
    portal.publish_candidate(9, history.trained, base=1)  # never gated
    late = history.fresh_agent("beta", "beta-ungated")
    with pytest.raises(Refused) as refused:
        late.check_round(portal.round_info(10, base_round=9))
    assert refused.value.reason == "base_not_adopted"
    assert "has no evaluation round" in refused.value.message


def test_a_node_sits_out_an_evaluation_round_whose_candidate_it_refuses(history):
    portal = history.portal
    public = load_public_context(portal.ckks.public_bytes, PARAMS)
    forged = io.BytesIO()  # what the operator can make with the public context alone
    values = pack_update(np.full(history.trained.size, 0.5), 600, 4.5)
    encrypt_vector(public, values, PARAMS, portal.fingerprint, forged)
    portal.publish_candidate(7, history.trained, base=1, blob=forged.getvalue())
    evaluation = portal.open_evaluation(8, candidate=7, base=1)
    portal.current = None  # played by hand, not by the other tests' polls
    agent = history.fresh_agent("gamma", "gamma-forged")

    assert agent.participate(evaluation) is False
    assert "integrity slot" in agent.state.skipped["8"]
    assert portal.uploads[8] == {}
    assert [o["reason_code"] for _, o, _ in portal.objections] == ["aggregate_integrity"]
    portal.objections.clear()


def test_an_evaluation_round_comparing_with_another_model_than_the_candidates_base_is_refused(
    history,
):
    portal = history.portal
    evaluation = portal.open_evaluation(11, candidate=3, base=None)  # round 3 came from 1
    portal.current = None
    agent = history.fresh_agent("beta", "beta-wrong-base")
    assert agent.participate(evaluation) is False
    assert "trained from 1" in agent.state.skipped["11"]
    assert [o["reason_code"] for _, o, _ in portal.objections] == ["evaluation_invalid"]
    portal.objections.clear()


def test_a_verdict_the_portal_could_not_be_reached_for_is_sent_again_unchanged(history):
    portal = history.portal
    late = history.fresh_agent("delta", "delta-offline")
    portal.verdicts_unreachable = True
    try:
        late.step()  # decides rounds 2 and 4, cannot post either
    finally:
        portal.verdicts_unreachable = False
    records = NodeState.load(late.config.state_dir / "state.json").verdicts
    assert {records[c]["decision"] for c in ("1", "3")} == {"adopt", "reject"}
    assert not records["1"]["posted"] and not records["3"]["posted"]
    before = len(portal.verdicts)

    late.step()  # the portal is back: the same signed verdicts, once each
    late.step()
    sent = portal.verdicts[before:]
    assert sorted((bank, n) for bank, n, _, _ in sent) == [("delta", 2), ("delta", 4)]
    for _, number, body, signature in sent:
        kept = records[str(number - 1)]
        assert (body, signature) == (kept["verdict"], kept["signature"])
    assert late.state.verdicts["1"]["posted"] and late.state.verdicts["3"]["posted"]


def test_every_evaluated_model_keeps_its_drift_reference_beside_it_for_score(history):
    for bank, agent in history.agents.items():
        state_dir = agent.config.state_dir
        rows = local_data(history.data_file(bank)).x_train.shape[0]
        for number in (1, 3):  # served (adopted) and kept (rejected) alike
            reference = json.loads(reference_file(state_dir, number).read_text())
            assert reference["round"] == number
            assert sum(reference["score_counts"]) == rows
            assert reference["features"] == FEATURE_NAMES

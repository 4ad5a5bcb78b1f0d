"""The evaluation gate under secure aggregation v2 (the default), played by four real agents.

Round 1 (training) and its evaluation round 2 each run sharing, open, unmasking and
published through ``Agent.step``; the relaying portal corrects and sums the masked uploads
with the ``he`` functions the scheduler uses (``tests/bank_node/secagg_nodes.py``), and
every node recomputes each sum before it decrypts (``aggregate_checkers`` 0).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bank_node.agent import Agent
from bank_node.training import local_data, model_from_vector
from he.codec import TRAILER_SLOTS
from he.keys import load_public_context
from he.ring import kit_from_tenseal
from models.gate import GATE_VECTOR_LENGTH, gate_vector
from models.training import predict_scores
from protocol import CohortKeys, MaskKeysPost, PolicySnapshot, Reveal, RoundInfo, UnmaskRequest
from simulation.world import generate_world
from tests.bank_node.gate_nodes import (
    N_FEATURES,
    PARAMS,
    SPEC,
    gate_agent,
    gated_policy,
    pinned_roster,
)
from tests.bank_node.secagg_nodes import (
    BANKS,
    THRESHOLD,
    Federation,
    manifest_for,
    portal_correction,
    portal_sum,
)
from tests.governance.roster_helpers import Ceremony, found
from tests.protocol.messages import round_dict

pytestmark = pytest.mark.filterwarnings("ignore")


class V2Relay:
    """Every round's v2 messages, relayed as the contract says; sums like the scheduler."""

    def __init__(self, tmp: Path, ckks: Any, ceremony: Ceremony, policy: PolicySnapshot) -> None:
        self.tmp, self.ckks, self.ceremony = tmp, ckks, ceremony
        self.integrity, self.policy = os.urandom(32), policy
        self.rounds: dict[int, RoundInfo] = {}
        self.current: RoundInfo | None = None
        self.posts: dict[str, MaskKeysPost] = {}
        self.uploads: dict[str, Path] = {}
        self.reveals: dict[str, Reveal] = {}
        self.verdicts: list[tuple[str, int, dict[str, Any], str]] = []
        self.objections: list[dict[str, Any]] = []

    def view(self, bank: str) -> V2View:
        return V2View(self, bank)

    def open(self, number: int, **fields: Any) -> None:
        data = {"number": number, "state": "sharing", "policy": self.policy.to_dict()}
        data |= {"key_epoch": self.ckks.fingerprint, "stats_round": None, "base_round": None}
        data |= {"base_key_epoch": None, "vector_length": self.policy.vector_length}
        self.current = RoundInfo.from_dict(round_dict(**(data | fields)))
        self.posts, self.uploads, self.reveals = {}, {}, {}

    def phase(self, state: str) -> None:
        assert self.current is not None
        self.current = dataclasses.replace(self.current, state=state)

    def publish(self, roster: Any) -> RoundInfo:
        assert self.current is not None
        rnd, survivors = self.current, tuple(sorted(self.uploads))
        fed = Federation(dataclasses.replace(self.ceremony, state=roster), rnd, {}, self.posts)
        kit = kit_from_tenseal(load_public_context(self.ckks.public_bytes, PARAMS), PARAMS)
        reveals = [self.reveals[b] for b in survivors]
        terms = portal_correction(fed, reveals, survivors, ())
        out = self.tmp / f"aggregate-{rnd.number}.ckks2"
        digest = portal_sum(fed, kit, self.uploads, terms, out)
        manifest = manifest_for(fed, self.uploads, digest, survivors, (), reveals)
        published = dataclasses.replace(
            rnd, state="published", manifest=manifest, aggregate_digest=digest
        )
        self.rounds[rnd.number], self.current = published, None
        return published


@dataclasses.dataclass
class V2View:
    """One bank's client on the relay."""

    relay: V2Relay
    bank: str

    def current_round(self) -> RoundInfo | None:
        return self.relay.current

    def rounds(self, limit: int = 20) -> list[RoundInfo]:
        return sorted(self.relay.rounds.values(), key=lambda r: -r.number)[:limit]

    def round(self, number: int) -> RoundInfo:
        current = self.relay.current
        return current if current and current.number == number else self.relay.rounds[number]

    def mask_keys_put(self, number: int, post: MaskKeysPost) -> dict[str, Any]:
        self.relay.posts[self.bank] = post
        return {}

    def cohort_keys(self, number: int) -> CohortKeys:
        assert self.relay.current is not None
        fed = Federation(self.relay.ceremony, self.relay.current, {}, self.relay.posts)
        return fed.cohort_keys(self.bank, tuple(sorted(self.relay.posts)))

    def upload_update(self, number: int, path: Path, digest: str, signature: str, **_: Any) -> None:
        kept = self.relay.tmp / f"upload-{number}-{self.bank}.ckks2"
        kept.write_bytes(path.read_bytes())
        self.relay.uploads[self.bank] = kept

    def unmask_request(self, number: int) -> UnmaskRequest:
        return UnmaskRequest(number, THRESHOLD, tuple(sorted(self.relay.uploads)), ())

    def reveal_post(self, number: int, reveal: Reveal) -> dict[str, Any]:
        self.relay.reveals[self.bank] = reveal
        return {}

    def download_submission(self, number: int, bank: str, dest: Path) -> str:
        dest.write_bytes((self.relay.tmp / f"upload-{number}-{bank}.ckks2").read_bytes())
        return hashlib.sha256(dest.read_bytes()).hexdigest()

    def download_aggregate(self, number: int, dest: Path) -> str:
        dest.write_bytes((self.relay.tmp / f"aggregate-{number}.ckks2").read_bytes())
        return hashlib.sha256(dest.read_bytes()).hexdigest()

    def send_verdict(self, number: int, verdict: dict[str, Any], signature: str) -> None:
        self.relay.verdicts.append((self.bank, number, verdict, signature))

    def send_objection(self, objection: dict[str, Any], signature: str) -> None:
        self.relay.objections.append(objection)

    def roster(self, after: int | None = None) -> dict[str, Any]:
        return {"versions": [], "pending": []}

    def report_metrics(self, number: int, metrics: dict[str, Any]) -> None:
        return None


def _play(relay: V2Relay, agents: dict[str, Agent], roster: Any) -> RoundInfo:
    """The current round's four phases, every agent polling once in each."""
    for state in ("sharing", "open", "unmasking"):
        relay.phase(state)
        for agent in agents.values():
            agent.step()
    assert sorted(relay.uploads) == sorted(BANKS), relay.objections
    return relay.publish(roster)


def test_an_evaluation_round_under_v2_sums_masked_histograms_and_every_node_adopts(ckks, tmp_path):
    world = tmp_path / "world"
    generate_world(world, n_banks=4, preset="tiny", seed=3)
    ceremony = found()
    policy = PolicySnapshot.from_dict(
        gated_policy().to_dict() | {"secure_aggregation": "v2", "aggregate_checkers": 0}
    )
    relay = V2Relay(tmp_path, ckks, ceremony, policy)
    roster = pinned_roster(ceremony, ckks.fingerprint, policy)
    files = {bank: world / f"bank_{i + 1}.csv" for i, bank in enumerate(BANKS)}
    agents = {b: gate_agent(relay, b, files[b], roster, tmp_path / b) for b in BANKS}

    relay.open(1)
    _play(relay, agents, roster)  # each trains from the initial model
    gate_length = GATE_VECTOR_LENGTH + TRAILER_SLOTS
    relay.open(2, kind="evaluation", candidate_round=1, vector_length=gate_length)
    published = _play(relay, agents, roster)
    for agent in agents.values():
        agent.step()  # decide round 2

    candidate = agents["alpha"].models.global_weights(1, ckks.fingerprint)[0]
    pooled = np.zeros(GATE_VECTOR_LENGTH)
    for bank in BANKS:
        data = local_data(files[bank])
        scores = [
            predict_scores(model_from_vector(SPEC, N_FEATURES, w), data.x_val)
            for w in (candidate, None)
        ]
        pooled += gate_vector(scores[0], scores[1], data.y_val)
    counts, rows = agents["beta"].models.global_weights(2, ckks.fingerprint)
    assert np.array_equal(np.rint(counts * rows), pooled)
    assert relay.objections == []
    assert sorted((b, n) for b, n, _, _ in relay.verdicts) == [(b, 2) for b in sorted(BANKS)]
    for bank, _, verdict, _ in relay.verdicts:
        assert verdict["aggregate_digest"] == published.aggregate_digest
        assert agents[bank].state.verdicts["1"]["decision"] == verdict["decision"] == "adopt"

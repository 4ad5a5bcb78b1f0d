"""Four agents play a v2 round phase by phase through ``Agent.step``, against a relaying fake portal.

The portal here is honest and minimal: it keeps what the nodes send, relays it as the
contract of ``docs/secure-aggregation.md`` says, and sums like the scheduler. One bank
(delta) advertises its mask key and then drops; the other three train, upload, reveal,
then check the record, recompute the sum and use the FedAvg.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from bank_node.agent import Agent
from bank_node.config import NodeConfig
from bank_node.keys import Keyring
from governance import PolicyApproval, PrivacyFloor, RosterState
from he.codec import TRAILER_SLOTS
from he.keys import load_public_context
from he.params import CkksParams
from he.ring import kit_from_tenseal
from models.features import FEATURE_NAMES
from models.nets import build_model
from models.vector import vector_length
from protocol import (
    CohortKeys,
    MaskKeysPost,
    PolicySnapshot,
    Reveal,
    RoundInfo,
    UnmaskRequest,
)
from simulation.world import generate_world
from tests.bank_node.secagg_nodes import (
    BANKS,
    BANKS_SORTED,
    THRESHOLD,
    Federation,
    manifest_for,
    portal_correction,
    portal_sum,
)
from tests.governance.roster_helpers import Ceremony, found
from tests.protocol.messages import policy_dict, round_dict

pytestmark = pytest.mark.filterwarnings("ignore")
PARAMS = CkksParams()
SPEC = {"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"}
NUMBER = 5


class RelayPortal:
    """The routes a v2 round uses, answered from what the nodes sent."""

    def __init__(self, tmp: Path, rnd: RoundInfo) -> None:
        self.tmp, self.rnd, self.published = tmp, rnd, False
        self.posts: dict[str, MaskKeysPost] = {}
        self.uploads: dict[str, Path] = {}
        self.reveals: dict[str, Reveal] = {}
        self.objections: list[dict[str, Any]] = []
        self.aggregate = tmp / "aggregate.ckks2"
        self.downloads: list[str] = []

    def for_bank(self, bank: str) -> BankView:
        return BankView(self, bank)

    def state(self, state: str, **overrides: Any) -> None:
        self.rnd = dataclasses.replace(self.rnd, state=state, **overrides)

    def request(self) -> UnmaskRequest:
        survivors = tuple(sorted(self.uploads))
        dropped = tuple(sorted(set(self.posts) - set(self.uploads)))
        return UnmaskRequest(NUMBER, THRESHOLD, survivors, dropped)


@dataclasses.dataclass
class BankView:
    """One bank's authenticated client on the relay portal."""

    portal: RelayPortal
    bank: str

    def current_round(self) -> RoundInfo | None:
        return None if self.portal.published else self.portal.rnd

    def rounds(self, limit: int = 20) -> list[RoundInfo]:
        return [self.portal.rnd] if self.portal.published else []

    def round(self, number: int) -> RoundInfo:
        return self.portal.rnd

    def mask_keys_put(self, number: int, post: MaskKeysPost) -> dict[str, Any]:
        assert self.bank not in self.portal.posts or self.portal.posts[self.bank] == post
        self.portal.posts[self.bank] = post
        return {}

    def cohort_keys(self, number: int) -> CohortKeys:
        fed = Federation(found(), self.portal.rnd, {}, self.portal.posts)  # relays only
        return fed.cohort_keys(self.bank, tuple(sorted(self.portal.posts)))

    def upload_update(self, number: int, path: Path, digest: str, signature: str, **_: Any) -> None:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        self.portal.uploads[self.bank] = self.portal.tmp / f"{self.bank}.ckks2"
        self.portal.uploads[self.bank].write_bytes(path.read_bytes())

    def unmask_request(self, number: int) -> UnmaskRequest:
        return self.portal.request()

    def reveal_post(self, number: int, reveal: Reveal) -> dict[str, Any]:
        self.portal.reveals[self.bank] = reveal
        return {}

    def download_submission(self, number: int, bank: str, dest: Path) -> str:
        self.portal.downloads.append(bank)
        dest.write_bytes(self.portal.uploads[bank].read_bytes())
        return hashlib.sha256(dest.read_bytes()).hexdigest()

    def download_aggregate(self, number: int, dest: Path) -> str:
        dest.write_bytes(self.portal.aggregate.read_bytes())
        return hashlib.sha256(dest.read_bytes()).hexdigest()

    def send_objection(self, objection: dict[str, Any], signature: str) -> dict[str, Any]:
        self.portal.objections.append(objection)
        return {}

    def roster(self, after: int | None = None) -> dict[str, Any]:
        return {"versions": [], "pending": []}

    def report_metrics(self, number: int, metrics: dict[str, Any]) -> None:
        return None


class PinnedRoster:
    """Stands in for ``RosterKeeper``: the verified state, nothing new to fetch."""

    def __init__(self, state: RosterState) -> None:
        self.state = state

    def refresh(self, client: Any, objector: Any) -> int:
        return 0


def _roster(ceremony: Ceremony, fingerprint: str, policy: PolicySnapshot) -> RosterState:
    """The founders' roster with this key epoch in force and the policy approved."""
    approval = PolicyApproval(policy.name, policy.version, policy.digest())
    return dataclasses.replace(
        ceremony.state,
        key_epochs=(fingerprint,),
        policies=(approval,),
        privacy=PrivacyFloor(dp_required=False),
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, n_banks=4, preset="tiny", seed=3)
    return out


def _agents(
    tmp: Path, world: Path, ckks: Any, ceremony: Ceremony, roster: RosterState, portal: RelayPortal
) -> dict[str, Agent]:
    integrity = os.urandom(32)
    agents = {}
    for i, bank in enumerate(BANKS):
        config = NodeConfig(
            portal_url="http://127.0.0.1:9",
            bank=bank,
            credential_file=tmp / "none",
            signing_key_file=tmp / "none",
            secret_context_file=tmp / "none",
            ckks_params_file=tmp / "none",
            data_file=world / f"bank_{i + 1}.csv",
            state_dir=tmp / bank,
            keep_plaintext_updates=True,
        )
        keys = Keyring(
            secret_context=ckks.secret,
            params=PARAMS,
            fingerprint=ckks.fingerprint,
            signing_key=ceremony[bank].key,
            integrity_key=integrity,
            agreement_key=ceremony[bank].agreement,
        )
        client, keeper = portal.for_bank(bank), PinnedRoster(roster)
        agents[bank] = Agent(config, keys, client, keeper)  # type: ignore[arg-type]
    return agents


def _mask_jobs(where: str) -> float:
    return REGISTRY.get_sample_value("bank_node_mask_duration_seconds_count", {"where": where}) or 0


def test_four_agents_share_upload_reveal_and_use_the_survivors_fedavg(
    ckks, tmp_path, world, caplog
):
    ceremony = found()
    policy = policy_dict(
        model_spec=SPEC,
        n_features=len(FEATURE_NAMES),
        vector_length=vector_length(build_model(SPEC, len(FEATURE_NAMES))) + TRAILER_SLOTS,
        normalize_features=False,
        min_banks=3,
    )
    snapshot = PolicySnapshot.from_dict(policy)
    roster = _roster(ceremony, ckks.fingerprint, snapshot)
    fields = {
        "number": NUMBER,
        "state": "sharing",
        "policy": policy,
        "key_epoch": ckks.fingerprint,
        "vector_length": snapshot.vector_length,  # what the portal serves: the masks' length
    }
    rnd = RoundInfo.from_dict(
        round_dict(**fields, base_round=None, base_key_epoch=None, stats_round=None)
    )
    portal = RelayPortal(tmp_path, rnd)
    agents = _agents(tmp_path, world, ckks, ceremony, roster, portal)

    for agent in agents.values():
        agent.step()
        agent.step()  # a second poll in the same phase sends nothing new
    assert sorted(portal.posts) == list(BANKS_SORTED)

    portal.state("open")
    survivors = ("alpha", "beta", "gamma")
    background = _mask_jobs("background")
    with caplog.at_level(logging.WARNING, logger="bank_node"):
        for bank in survivors:  # delta drops after advertising its key
            agents[bank].step()
    assert sorted(portal.uploads) == list(survivors)
    # Each node's masks were computed on its thread while it trained, none inline.
    assert _mask_jobs("background") == background + 3
    assert "computing the masks inline" not in caplog.text

    portal.state("unmasking")
    for bank in survivors:
        agents[bank].step()
    reveals = [portal.reveals[b] for b in survivors]

    pinned = dataclasses.replace(ceremony, state=roster)
    fed = Federation(pinned, portal.rnd, {}, portal.posts)
    public = kit_from_tenseal(load_public_context(ckks.public_bytes, PARAMS), PARAMS)
    terms = portal_correction(fed, reveals, survivors, ("delta",))
    digest = portal_sum(fed, public, portal.uploads, terms, portal.aggregate)
    manifest = manifest_for(fed, portal.uploads, digest, survivors, ("delta",), reveals)
    portal.state("published", manifest=manifest, aggregate_digest=digest)
    portal.published = True
    for bank in survivors:
        agents[bank].step()

    assert portal.objections == []
    assert set(portal.downloads) == set(survivors)  # every node recomputed (0 checkers)
    plain = [np.load(tmp_path / b / f"plain-round-{NUMBER}.npy") for b in survivors]
    total = np.sum(plain, axis=0)
    expected = total[:-2] / total[-2]
    for bank in survivors:
        assert str(NUMBER) in agents[bank].state.evaluated
        model = np.load(tmp_path / bank / "global_model.npy")
        assert np.max(np.abs(model - expected)) < 1e-6


def test_an_unpinned_node_refuses_a_v2_round_and_posts_nothing(ckks, tmp_path, world):
    ceremony = found()
    policy = policy_dict(model_spec=SPEC, n_features=len(FEATURE_NAMES), normalize_features=False)
    snapshot = PolicySnapshot.from_dict(policy)
    fields = {"number": NUMBER, "state": "sharing", "policy": policy, "key_epoch": ckks.fingerprint}
    portal = RelayPortal(tmp_path, RoundInfo.from_dict(round_dict(**fields)))
    agents = _agents(
        tmp_path, world, ckks, ceremony, _roster(ceremony, ckks.fingerprint, snapshot), portal
    )
    agent = agents["alpha"]
    agent.keeper = None
    agent.step()
    assert portal.posts == {}
    assert "pinned roster" in agent.state.skipped[str(NUMBER)]


def test_a_v1_round_keeps_the_v1_path_one_ckksvec1_upload_and_no_mask_keys(ckks, tmp_path, world):
    ceremony = found()
    policy = policy_dict(
        model_spec=SPEC,
        n_features=len(FEATURE_NAMES),
        normalize_features=False,
        secure_aggregation="v1",
    )
    snapshot = PolicySnapshot.from_dict(policy)
    fields = {"number": NUMBER, "state": "open", "policy": policy, "key_epoch": ckks.fingerprint}
    rnd = RoundInfo.from_dict(
        round_dict(**fields, base_round=None, base_key_epoch=None, stats_round=None)
    )
    portal = RelayPortal(tmp_path, rnd)
    roster = _roster(ceremony, ckks.fingerprint, snapshot)
    agent = _agents(tmp_path, world, ckks, ceremony, roster, portal)["alpha"]
    agent.step()
    assert portal.posts == {} and portal.objections == []
    assert portal.uploads["alpha"].read_bytes()[:8] == b"CKKSVEC1"
    assert not (tmp_path / "alpha" / "secagg").exists()

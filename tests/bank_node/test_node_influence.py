"""Bounded influence with real nodes and real CKKS: clipped steps, capped counts, the norm check.

Three agents share one consortium key and train on their own banks' files; the "portal"
here keeps their encrypted uploads, sums them with the public context as the scheduler
does, and publishes the sum. The attacker exists in the test only: bank-c's real node
trains, then the test scales its step by 100 before the node packs and encrypts it.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bank_node import metrics as node_metrics
from bank_node.agent import Agent
from bank_node.config import NodeConfig
from bank_node.keys import (
    PARAMS,
    PUBLIC_CONTEXT,
    SECRET_CONTEXT,
    SIGNING_KEY,
    ckks_keygen,
    keyring_load,
    signing_keygen,
)
from bank_node.training import feature_moments
from he.aggregate import sum_vectors
from he.codec import STATS_COUNT_UNIT, encrypt_to_file, pack_update
from he.integrity import tag_value
from he.keys import load_public_context
from he.params import CkksParams
from he.signing import public_key_b64
from models.features import FEATURE_NAMES
from models.influence import norm_bound, update_norm
from models.nets import initial_vector
from protocol import PolicySnapshot, RoundInfo
from simulation.world import generate_world
from tests.bank_node.roster_fakes import objection_verifies
from tests.bank_node.test_node_integrity import Portal as ReadPortal
from tests.protocol.messages import manifest_dict, policy_dict, round_dict

SPEC = {"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"}
BANKS = ("bank-a", "bank-b", "bank-c")
FEATURES = len(FEATURE_NAMES)
# Below an honest step on the tiny world, so that every honest node clips (the first test
# checks the pre-clip norm the node reports).
CLIP = 0.2


class Portal(ReadPortal):
    """Rounds and aggregates as before, plus the uploads and objections nodes send."""

    def __init__(self, tmp: Path, public: Path) -> None:
        super().__init__()
        self.tmp, self.public = tmp, public
        self.uploads: dict[int, list[Path]] = {}
        self.objections: list[dict[str, Any]] = []

    def upload_update(self, number: int, path: Path, digest: str, signature: str, **_: Any) -> None:
        kept = self.tmp / f"upload-{number}-{len(self.uploads.get(number, []))}.ckks"
        shutil.copy(path, kept)  # the node deletes its copy once uploaded
        self.uploads.setdefault(number, []).append(kept)

    def send_objection(self, objection: dict[str, Any], signature: str) -> None:
        self.objections.append({"objection": objection, "signature": signature})

    def publish(self, rnd: RoundInfo, params: CkksParams) -> None:
        """Sum round ``rnd``'s uploads as the scheduler does and publish the aggregate."""
        out = io.BytesIO()
        context = load_public_context(self.public.read_bytes(), params)
        sum_vectors(self.uploads[rnd.number], context, params, out)
        self.blobs[rnd.number] = out.getvalue()
        self.published[rnd.number] = published(rnd, self.blobs[rnd.number])
        self.open = None


def policy(**overrides: Any) -> dict[str, Any]:
    # One local epoch: enough to step past CLIP, and half the test's training time.
    fields = {"model_spec": SPEC, "n_features": FEATURES, "secure_aggregation": "v1"}
    fields["local_epochs"] = 1
    return policy_dict(**fields, **({"normalize_features": False} | overrides))


def training(number: int, fp: str, base: int | None = None, **fields: Any) -> RoundInfo:
    """An open training round under a clip-norm policy (``fields`` override)."""
    values = {
        "number": number,
        "state": "open",
        "policy": policy(update_clip_norm=CLIP),
        "stats_round": None,
        "base_round": base,
        "base_key_epoch": fp if base is not None else None,
        "key_epoch": fp,
        "manifest": {},
    }
    return RoundInfo.from_dict(round_dict(**(values | fields)))


def published(rnd: RoundInfo, blob: bytes) -> RoundInfo:
    inputs = [{"bank": b, "digest": f"{i:02d}" * 32} for i, b in enumerate(BANKS)]
    manifest = manifest_dict(
        round=rnd.number,
        key_epoch=rnd.key_epoch,
        aggregate_digest=hashlib.sha256(blob).hexdigest(),
        inputs=inputs,
    )
    data = rnd.to_dict() | {"state": "published", "manifest": manifest}
    return RoundInfo.from_dict(data)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, n_banks=3, preset="tiny", seed=5)
    return out


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ceremony")
    ckks_keygen(out, CkksParams())
    signing_keygen(out)
    return out


@pytest.fixture
def federation(tmp_path: Path, world: Path, keys_dir: Path) -> tuple[list[Agent], Portal]:
    """Three nodes, one per bank of ``world``, sharing the consortium key and one portal."""
    portal = Portal(tmp_path, keys_dir / PUBLIC_CONTEXT)
    return make_agents(tmp_path, world, keys_dir, portal), portal


def make_agents(tmp_path: Path, world: Path, keys_dir: Path, portal: Portal) -> list[Agent]:
    """One node per bank of ``world``, sharing the consortium key and ``portal``."""
    agents = []
    for i, bank in enumerate(BANKS, start=1):
        config = NodeConfig(
            portal_url="http://127.0.0.1:9",
            bank=bank,
            credential_file=tmp_path / "none",
            signing_key_file=keys_dir / SIGNING_KEY,
            secret_context_file=keys_dir / SECRET_CONTEXT,
            ckks_params_file=keys_dir / PARAMS,
            data_file=world / f"bank_{i}.csv",
            state_dir=tmp_path / bank,
        )
        keys = keyring_load(
            config.secret_context_file, config.ckks_params_file, config.signing_key_file
        )
        agent = Agent(config, keys, portal)  # type: ignore[arg-type]  # a fake portal
        agent.objector.consortium_id = lambda: "consortium-1"  # as with a pinned roster
        agents.append(agent)
    return agents


def _round_of_honest_updates(agents: list[Agent], portal: Portal, rnd: RoundInfo) -> None:
    portal.open = rnd
    for agent in agents:
        assert agent.participate(rnd) is True
    portal.publish(rnd, agents[0].keys.params)


def _scaled_upload(attacker: Agent, portal: Portal, rnd: RoundInfo, scale: float) -> None:
    """bank-c's real training, its step then scaled by ``scale``, packed and encrypted."""
    weights, n, _ = attacker.local_update(rnd)
    base = attacker.base_weights(rnd)
    assert base is not None
    scaled = base + scale * (weights - base)
    digest, path = attacker.encrypt(rnd, attacker.pack(rnd, scaled, n))
    portal.upload_update(rnd.number, path, digest, "")


def _model(agent: Agent) -> np.ndarray:
    return np.load(agent.config.state_dir / "global_model.npy")


def test_honest_nodes_clip_their_steps_and_accept_the_aggregate_within_the_bound(
    federation: tuple[list[Agent], Portal],
) -> None:
    agents, portal = federation
    fp = agents[0].keys.fingerprint
    clipped_before = node_metrics.UPDATES_CLIPPED._value.get()

    _round_of_honest_updates(agents, portal, training(1, fp))

    assert node_metrics.UPDATES_CLIPPED._value.get() == clipped_before + len(BANKS)
    assert node_metrics.UPDATE_NORM._value.get() > CLIP  # the step before clipping
    agents[0].step()
    assert set(agents[0].state.evaluated) == {"1"} and not agents[0].state.refused
    weights, _ = agents[0].global_weights(1, fp)
    moved = update_norm(weights, initial_vector(SPEC, FEATURES))
    assert CLIP * 0.5 < moved <= norm_bound(CLIP, weights.size)


def test_an_aggregate_with_one_update_scaled_100_times_is_refused_and_the_node_goes_on(
    federation: tuple[list[Agent], Portal],
) -> None:
    agents, portal = federation
    fp = agents[0].keys.fingerprint
    node = agents[0]
    _round_of_honest_updates(agents, portal, training(1, fp))
    node.step()
    first = _model(node)
    refused_before = node_metrics.REFUSALS.labels("update_too_large")._value.get()

    poisoned = training(2, fp, base=1)
    portal.open = poisoned
    for agent in agents[:2]:
        assert agent.participate(poisoned) is True
    _scaled_upload(agents[2], portal, poisoned, 100.0)
    portal.publish(poisoned, node.keys.params)
    node.step()

    assert "2" not in node.state.evaluated
    assert "update_clip_norm 0.2 allows at most" in node.state.refused["2"]
    assert node_metrics.REFUSALS.labels("update_too_large")._value.get() == refused_before + 1
    sent = [o for o in portal.objections if o["objection"]["reason_code"] == "update_too_large"]
    assert [o["objection"]["round_number"] for o in sent] == [2]
    key = public_key_b64(node.keys.signing_key)
    assert objection_verifies(sent[0]["objection"], sent[0]["signature"], key)
    assert np.array_equal(_model(node), first)  # the last good model stays

    _round_of_honest_updates(agents, portal, training(3, fp, base=1))
    node.step()  # goes on: the next honest round is adopted
    assert "3" in node.state.evaluated
    assert not np.allclose(_model(node), first)


def _statistics(agents: list[Agent], portal: Portal, number: int, counts: list[int]) -> None:
    """A published statistics round whose banks counted ``counts`` training rows."""
    keys, paths = agents[0].keys, []
    moments, _ = feature_moments(agents[0].data(PolicySnapshot.from_dict(policy())))
    for bank, n in zip(BANKS, counts, strict=True):
        tag = tag_value(keys.integrity_key, keys.fingerprint, number, bank)
        paths.append(portal.tmp / f"stats-{bank}.ckks")
        packed = pack_update(moments, n, tag, STATS_COUNT_UNIT)
        encrypt_to_file(keys.secret_context, packed, keys.params, keys.fingerprint, paths[-1])
    portal.uploads[number] = paths
    rnd = RoundInfo.from_dict(
        round_dict(
            number=number,
            kind="statistics",
            key_epoch=keys.fingerprint,
            policy=policy(),
            stats_round=None,
            base_round=None,
            base_key_epoch=None,
        )
    )
    portal.publish(rnd, keys.params)


@pytest.mark.parametrize(("share_of_rows", "reported"), [(0.9, 0.5), (0.1, 0.1)])
def test_a_node_reports_at_most_the_policys_share_of_the_consortiums_rows(
    federation: tuple[list[Agent], Portal], share_of_rows: float, reported: float
) -> None:
    agents, portal = federation
    node = agents[0]
    node.config = replace(node.config, keep_plaintext_updates=True)
    rows = int(node.data(PolicySnapshot.from_dict(policy())).y_train.size)
    others = round(rows * (1 - share_of_rows) / share_of_rows / 2)
    _statistics(agents, portal, 1, [rows, others, others])
    total = rows + 2 * others
    capped_before = node_metrics.COUNTS_CAPPED._value.get()
    capping = policy(normalize_features=True, max_bank_share=0.5)
    rnd = training(2, node.keys.fingerprint, stats_round=1, policy=capping)

    assert node.participate(rnd) is True

    packed = np.load(node.config.state_dir / "plain-round-2.npy")
    assert packed[-2] == min(rows, int(0.5 * total))  # the count slot, in rows (unit 1)
    assert packed[-2] / total == pytest.approx(reported, abs=1e-3)
    capped = share_of_rows > 0.5
    assert node_metrics.COUNTS_CAPPED._value.get() == capped_before + capped

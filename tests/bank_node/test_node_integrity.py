"""A node refuses an "aggregate" the operator made itself, keeps its model and carries on."""

from __future__ import annotations

import hashlib
import io
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
from he.aggregate import sum_vectors
from he.codec import encrypt_to_file, encrypt_vector, pack_update
from he.integrity import tag_value
from he.keys import load_public_context
from he.params import CkksParams
from models.features import FEATURE_NAMES
from models.nets import build_model
from models.vector import model_to_vector
from protocol import RoundInfo
from simulation.world import generate_world
from tests.protocol.messages import manifest_dict, policy_dict, round_dict

SPEC = {"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"}
BANKS = ("bank-a", "bank-b", "bank-c")


class Portal:
    """The operator's side, as the node sees it over HTTP: rounds and aggregate blobs."""

    def __init__(self) -> None:
        self.published: dict[int, RoundInfo] = {}
        self.blobs: dict[int, bytes] = {}
        self.open: RoundInfo | None = None
        self.downloads: list[int] = []

    def current_round(self) -> RoundInfo | None:
        return self.open

    def rounds(self, limit: int = 20) -> list[RoundInfo]:
        return sorted(self.published.values(), key=lambda r: -r.number)[:limit]

    def round(self, number: int) -> RoundInfo:
        return self.published[number]

    def download_aggregate(self, number: int, dest: Path) -> str:
        self.downloads.append(number)
        dest.write_bytes(self.blobs[number])
        return hashlib.sha256(self.blobs[number]).hexdigest()

    def report_metrics(self, number: int, metrics: dict[str, Any]) -> None:
        return None


def _round(number: int, fp: str, blob: bytes = b"", **overrides: Any) -> RoundInfo:
    """A round as the portal lists it; its manifest names ``blob`` as the aggregate, so the
    node's digest check passes and what is tested is the check after decryption."""
    # The v1 path (one shared key); v2 aggregates are checked in test_secagg_node.py.
    policy = policy_dict(
        model_spec=SPEC,
        n_features=len(FEATURE_NAMES),
        normalize_features=False,
        secure_aggregation="v1",
    )
    inputs = [{"bank": b, "digest": f"{i:02d}" * 32} for i, b in enumerate(BANKS)]
    digest = hashlib.sha256(blob).hexdigest()
    fields = {
        "number": number,
        "state": "published",
        "policy": policy,
        "stats_round": None,
        "base_round": None,
        "base_key_epoch": None,
        "key_epoch": fp,
        "manifest": manifest_dict(
            round=number, key_epoch=fp, aggregate_digest=digest, inputs=inputs
        ),
    }
    return RoundInfo.from_dict(round_dict(**(fields | overrides)))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, n_banks=2, preset="tiny", seed=5)
    return out


@pytest.fixture
def node(tmp_path: Path, world: Path) -> tuple[Agent, Portal]:
    return make_node(tmp_path, world)


def make_node(tmp_path: Path, world: Path) -> tuple[Agent, Portal]:
    """An agent of ``BANKS[0]`` on ``world``'s first bank, with fresh keys and a fake portal."""
    fp = ckks_keygen(tmp_path, CkksParams())
    signing_keygen(tmp_path)
    config = NodeConfig(
        portal_url="http://127.0.0.1:9",
        bank=BANKS[0],
        credential_file=tmp_path / "none",
        signing_key_file=tmp_path / SIGNING_KEY,
        secret_context_file=tmp_path / SECRET_CONTEXT,
        ckks_params_file=tmp_path / PARAMS,
        data_file=world / "bank_1.csv",
        state_dir=tmp_path / "state",
    )
    keys = keyring_load(
        config.secret_context_file, config.ckks_params_file, config.signing_key_file
    )
    assert keys.fingerprint == fp
    portal = Portal()
    return Agent(config, keys, portal), portal  # type: ignore[arg-type]  # a fake portal


def _honest_aggregate(agent: Agent, tmp: Path, number: int) -> tuple[bytes, np.ndarray]:
    """Three members' tagged updates summed by the portal; returns blob and FedAvg."""
    keys, base = agent.keys, model_to_vector(build_model(SPEC, len(FEATURE_NAMES)))
    paths, updates, counts = [], [], [100, 200, 300]
    for i, (bank, n) in enumerate(zip(BANKS, counts, strict=True)):
        weights = base + np.random.default_rng(i).normal(0, 0.01, base.size)
        tag = tag_value(keys.integrity_key, keys.fingerprint, number, bank)
        paths.append(tmp / f"{bank}-{number}.ckks")
        encrypt_to_file(
            keys.secret_context,
            pack_update(weights, n, tag),
            keys.params,
            keys.fingerprint,
            paths[-1],
        )
        updates.append(weights * n)
    out = io.BytesIO()
    public = load_public_context((tmp / PUBLIC_CONTEXT).read_bytes(), keys.params)
    sum_vectors(paths, public, keys.params, out)
    return out.getvalue(), np.sum(updates, axis=0) / sum(counts)


def _self_encrypted(agent: Agent, tmp: Path) -> bytes:
    """What the operator can make with the public context alone: its own model."""
    public = load_public_context((tmp / PUBLIC_CONTEXT).read_bytes(), agent.keys.params)
    size = model_to_vector(build_model(SPEC, len(FEATURE_NAMES))).size
    evil = pack_update(np.full(size, 0.5), 600, 4.5)  # 4.5: the mean of three tags
    out = io.BytesIO()
    encrypt_vector(public, evil, agent.keys.params, agent.keys.fingerprint, out)
    return out.getvalue()


def test_a_node_refuses_a_self_encrypted_aggregate_and_keeps_its_previous_model(
    node: tuple[Agent, Portal], tmp_path: Path
) -> None:
    agent, portal = node
    fp = agent.keys.fingerprint
    portal.blobs[1], fedavg = _honest_aggregate(agent, tmp_path, 1)
    portal.blobs[2] = _self_encrypted(agent, tmp_path)
    portal.published = {1: _round(1, fp, portal.blobs[1]), 2: _round(2, fp, portal.blobs[2])}
    agent.state.submitted = {"1": "aa" * 32, "2": "bb" * 32}
    refused_before = node_metrics.AGGREGATES_REFUSED._value.get()

    agent.step()

    assert set(agent.state.evaluated) == {"1"}
    assert "integrity slot" in agent.state.refused["2"]
    assert node_metrics.AGGREGATES_REFUSED._value.get() == refused_before + 1
    model = np.load(agent.config.state_dir / "global_model.npy")
    assert np.max(np.abs(model - fedavg)) < 1e-6  # round 1's model, not the operator's

    agent.step()  # the next poll: no crash, no second refusal of the same aggregate
    assert portal.downloads.count(2) == 1
    assert node_metrics.AGGREGATES_REFUSED._value.get() == refused_before + 1


def test_a_node_sits_out_a_round_whose_base_is_a_forged_aggregate(
    node: tuple[Agent, Portal], tmp_path: Path
) -> None:
    agent, portal = node
    fp = agent.keys.fingerprint
    portal.blobs[2] = _self_encrypted(agent, tmp_path)
    portal.published = {2: _round(2, fp, portal.blobs[2])}
    portal.open = _round(3, fp, state="open", base_round=2, base_key_epoch=fp, manifest={})

    assert agent.participate(portal.open) is False
    assert "integrity slot" in agent.state.skipped["3"]
    assert "3" not in agent.state.submitted and "2" in agent.state.refused
    refused = node_metrics.AGGREGATES_REFUSED._value.get()
    portal.open = _round(4, fp, state="open", base_round=2, base_key_epoch=fp, manifest={})
    assert agent.participate(portal.open) is False  # the same base: refused from memory
    assert "integrity slot" in agent.state.skipped["4"]
    assert node_metrics.AGGREGATES_REFUSED._value.get() == refused

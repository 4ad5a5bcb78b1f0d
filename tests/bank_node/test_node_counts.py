"""The node packs, decrypts and reports in count units: stats round, derived unit, refusals."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bank_node.agent import Agent
from bank_node.keys import PUBLIC_CONTEXT
from he.aggregate import sum_vectors
from he.codec import STATS_COUNT_UNIT, encrypt_to_file, pack_update
from he.integrity import tag_value
from he.keys import load_public_context
from models.features import FEATURE_NAMES
from models.nets import build_model
from models.vector import model_to_vector
from simulation.world import generate_world
from tests.bank_node.test_node_integrity import BANKS, SPEC, Portal, _round, make_node

COUNTS = (50_000_000, 30_000_000, 20_000_000)  # 10^8 rows: counts go in units of 128
UNIT = 128


def _aggregate(
    agent: Agent, tmp: Path, number: int, vectors: list[np.ndarray], unit: int
) -> tuple[bytes, np.ndarray]:
    """The portal's sum of the three banks' tagged updates packed in ``unit``s, and the
    plain count-weighted average of ``vectors``."""
    keys, paths = agent.keys, []
    for bank, values, n in zip(BANKS, vectors, COUNTS, strict=True):
        tag = tag_value(keys.integrity_key, keys.fingerprint, number, bank)
        paths.append(tmp / f"{bank}-{number}.ckks")
        packed = pack_update(values, n, tag, unit)
        encrypt_to_file(keys.secret_context, packed, keys.params, keys.fingerprint, paths[-1])
    out = io.BytesIO()
    public = load_public_context((tmp / PUBLIC_CONTEXT).read_bytes(), keys.params)
    sum_vectors(paths, public, keys.params, out)
    pooled = np.asarray(sum(v * n for v, n in zip(vectors, COUNTS, strict=True)) / sum(COUNTS))
    return out.getvalue(), pooled


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, n_banks=2, preset="tiny", seed=5)
    return out


@pytest.fixture
def node(tmp_path: Path, world: Path) -> tuple[Agent, Portal]:
    return make_node(tmp_path, world)


@pytest.fixture
def published(node: tuple[Agent, Portal], tmp_path: Path) -> tuple[Agent, Portal, np.ndarray]:
    """Statistics round 1 over 10^8 rows and training round 2 built on it, both published;
    returns the agent, the portal and round 2's plain FedAvg."""
    agent, portal = node
    fp, rng = agent.keys.fingerprint, np.random.default_rng(3)
    features = len(FEATURE_NAMES)
    moments = [
        np.concatenate([rng.uniform(0, 1, features), rng.uniform(1, 2, features)]) for _ in BANKS
    ]
    portal.blobs[1], _ = _aggregate(agent, tmp_path, 1, moments, STATS_COUNT_UNIT)
    size = model_to_vector(build_model(SPEC, features)).size
    weights = [rng.normal(0, 0.3, size) for _ in BANKS]
    portal.blobs[2], fedavg = _aggregate(agent, tmp_path, 2, weights, UNIT)
    portal.published = {
        1: _round(1, fp, portal.blobs[1], kind="statistics"),
        2: _round(2, fp, portal.blobs[2], stats_round=1),
    }
    return agent, portal, fedavg


def test_a_node_decrypts_a_round_in_units_to_the_fedavg_and_the_total_in_rows(published):
    agent, portal, fedavg = published
    weights, total = agent.global_weights(2, agent.keys.fingerprint)
    assert total == sum(COUNTS)
    assert np.max(np.abs(weights - fedavg)) < 1e-6
    assert agent.count_unit(portal.published[2]) == UNIT
    cached = json.loads((agent.config.state_dir / "normalization-round-1.json").read_text())
    assert cached["rows"] == sum(COUNTS)


def test_a_node_packs_a_statistics_round_and_a_training_round_in_their_units(published):
    agent, _portal, _ = published
    fp = agent.keys.fingerprint
    stats = _round(5, fp, kind="statistics", state="open", manifest={})
    training = _round(6, fp, stats_round=1, state="open", manifest={})
    assert agent.pack(stats, np.full(4, 0.5), 3000)[-2] == 3000 / STATS_COUNT_UNIT
    assert agent.pack(training, np.full(4, 0.5), 3000)[-2] == 3000 / UNIT
    assert agent.pack(_round(7, fp, state="open", manifest={}), np.ones(4), 3000)[-2] == 3000


@pytest.mark.parametrize(
    ("weights", "rows", "reason"),
    [
        (np.full(10, 0.5), 100_000_000, "enable normalize_features"),
        (np.array([0.5, np.nan]), 1000, "NaN or infinite"),
    ],
)
def test_a_node_sits_out_with_a_clear_reason_when_its_update_cannot_be_sent(
    node: tuple[Agent, Portal], monkeypatch: pytest.MonkeyPatch, weights, rows, reason
):
    agent, _portal = node
    fp = agent.keys.fingerprint
    offered = _round(3, fp, state="open", manifest={})

    def trained(rnd: Any) -> tuple[np.ndarray, int, None]:
        return weights, rows, None

    monkeypatch.setattr(agent, "local_update", trained)
    assert agent.participate(offered) is False
    assert reason in agent.state.skipped["3"]
    assert "3" not in agent.state.submitted

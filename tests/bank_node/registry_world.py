"""A tiny bank, two real models of it and their real evaluations, for the registry tests.

``trained`` is a model trained (three epochs, normalised features) on the bank's own
training rows; ``noise`` is random weights. Both are evaluated by the node's own ``evaluate`` on the bank's held-out rows,
so a test's "drop" is a measured one, not a number the test chose.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bank_node.config import NodeConfig
from bank_node.training import (
    Normalizer,
    evaluate,
    feature_moments,
    local_data,
    model_from_vector,
    train_round,
)
from protocol import PolicySnapshot, RoundInfo
from simulation.world import generate_world
from tests.bank_node.gate_nodes import N_FEATURES, SPEC, gated_policy
from tests.protocol.messages import round_dict

BANK = "alpha"
EPOCH = "ab" * 32
STATS_ROUND = 1


@dataclass(frozen=True)
class Evaluated:
    weights: np.ndarray
    metrics: dict[str, Any]  # as the agent keeps them: the threshold taken out
    threshold: float | None

    @property
    def auprc(self) -> float:
        return float(self.metrics["auprc"])


@dataclass(frozen=True)
class TinyBank:
    data_file: Path
    trained: Evaluated
    noise: Evaluated
    normalizer: Normalizer

    def normalization_into(self, state_dir: Path) -> None:
        """The statistics round's normalisation where the node keeps it (as the agent does)."""
        state_dir.mkdir(parents=True, exist_ok=True)
        name = f"normalization-round-{STATS_ROUND}.json"
        (state_dir / name).write_text(self.normalizer.to_json())


def _evaluated(weights: np.ndarray, data: Any) -> Evaluated:
    metrics = evaluate(model_from_vector(SPEC, N_FEATURES, weights), data)
    threshold = metrics.pop("threshold", None)
    return Evaluated(weights, metrics, threshold)


@functools.lru_cache(maxsize=1)
def tiny_bank() -> TinyBank:
    """Built once per test process (a world, one training run, two evaluations)."""
    out = Path(tempfile.mkdtemp(prefix="registry-world-"))
    generate_world(out, n_banks=3, preset="tiny", seed=5)
    data_file = out / "bank_1.csv"
    raw = local_data(data_file)
    moments, rows = feature_moments(raw)
    normalizer = Normalizer.from_moments(moments, STATS_ROUND, rows=rows)
    data = raw.normalized(normalizer)
    trained, _ = train_round(data, ungated_policy(), None, seed=1)
    noise = np.random.default_rng(0).normal(0.0, 1.0, trained.size)
    evaluated = _evaluated(trained, data), _evaluated(noise, data)
    return TinyBank(data_file, *evaluated, normalizer)


def ungated_policy() -> PolicySnapshot:
    changes = {"gate_tolerance": None, "local_epochs": 3, "normalize_features": True}
    return PolicySnapshot.from_dict(gated_policy().to_dict() | changes)


def gated() -> PolicySnapshot:
    return PolicySnapshot.from_dict(ungated_policy().to_dict() | {"gate_tolerance": 0.005})


def published(number: int, policy: PolicySnapshot, epsilon: float | None = 1.5) -> RoundInfo:
    """Published training round ``number`` of ``policy``; this bank signed ``epsilon``."""
    inputs = [
        {"bank": BANK, "digest": "a1" * 32, "signature": "", "epsilon": epsilon},
        {"bank": "beta", "digest": "b2" * 32, "signature": "", "epsilon": None},
    ]
    manifest = {
        "round": number,
        "key_epoch": EPOCH,
        "aggregate_digest": f"{number:02d}" * 32,
        "inputs": inputs,
    }
    fields = {
        "number": number,
        "state": "published",
        "policy": policy.to_dict(),
        "vector_length": policy.vector_length,
        "key_epoch": EPOCH,
        "stats_round": STATS_ROUND,
        "base_round": None,
        "base_key_epoch": None,
        "aggregate_digest": f"{number:02d}" * 32,
        "manifest": manifest,
    }
    return RoundInfo.from_dict(round_dict(**fields))


def node_config(state_dir: Path, data_file: Path, **fields: Any) -> NodeConfig:
    """A node's config whose key files are never read (no round is played)."""
    return NodeConfig(
        portal_url="http://127.0.0.1:9",
        bank=BANK,
        credential_file=state_dir / "credential",
        signing_key_file=state_dir / "signing.key",
        secret_context_file=state_dir / "consortium.secret",
        ckks_params_file=state_dir / "ckks_params.json",
        data_file=data_file,
        state_dir=state_dir,
        **fields,
    )


def node_toml(directory: Path, data_file: Path, extra: str = "") -> Path:
    """The same node as a TOML file, for the CLI (state in ``directory/state``)."""
    path = directory / "node.toml"
    path.write_text(
        'portal_url = "http://127.0.0.1:9"\nbank = "alpha"\n'
        'credential_file = "credential"\nsigning_key_file = "signing.key"\n'
        'secret_context_file = "consortium.secret"\nckks_params_file = "ckks_params.json"\n'
        f'data_file = "{data_file}"\nstate_dir = "state"\n{extra}'
    )
    return path

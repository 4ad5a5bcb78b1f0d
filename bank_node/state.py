"""What the node remembers across restarts, and the DP settings a policy implies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.privacy import DPConfig
from protocol import PolicySnapshot, RoundInfo


def state_file(state_dir: Path) -> Path:
    """Where the node keeps its ``NodeState``."""
    return state_dir / "state.json"


def aggregate_file(state_dir: Path, number: int) -> Path:
    """Where the node keeps round ``number``'s downloaded aggregate."""
    return state_dir / f"aggregate-round-{number}.ckks"


@dataclass
class NodeState:
    """What the node remembers across restarts (in ``state_dir/state.json``)."""

    submitted: dict[str, str] = field(default_factory=dict)  # round -> digest
    evaluated: dict[str, dict[str, Any]] = field(default_factory=dict)  # round -> metrics
    skipped: dict[str, str] = field(default_factory=dict)  # round -> reason
    # Differential privacy: Opacus's RDP history across rounds, and the epsilon it implies.
    dp_accountant: dict[str, Any] | None = None
    epsilon: float | None = None
    refused: dict[str, str] = field(default_factory=dict)  # round -> why its aggregate was not used
    submitted_at: dict[str, float] = field(default_factory=dict)  # round -> unix time of upload
    # The evaluation gate: candidate round -> this bank's own verdict on it (bank_node/gate.py).
    verdicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Training rounds evaluated under a gated policy: done only once their gate is decided.
    gated: list[str] = field(default_factory=list)
    # Published sketch rounds kept (bank_node/sketch_round.py): round -> as-of dates and spec.
    sketches: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> NodeState:
        if not path.exists():
            return cls()
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__, indent=2, sort_keys=True))
        tmp.replace(path)


def dp_config(policy: PolicySnapshot) -> DPConfig:
    """The DP-SGD settings of a policy, its budget planned over ``max_rounds`` rounds."""
    return DPConfig(
        target_epsilon=policy.dp_target_epsilon,
        delta=policy.dp_delta,
        max_grad_norm=policy.dp_max_grad_norm,
        noise_multiplier=policy.dp_noise_multiplier,
        planned_rounds=policy.max_rounds,
        local_epochs=policy.local_epochs,
        batch_size=policy.batch_size,
    )


def save_global_model(
    state_dir: Path, rnd: RoundInfo, weights: np.ndarray, threshold: float | None
) -> None:
    """Keep the newest evaluated global model for scoring: its weights and how to use them.

    An older round evaluated late (listed after a newer one, or once a fault cleared)
    never replaces a newer model.
    """
    if _saved_round(state_dir) > rnd.number:
        return
    _write_model(state_dir, "global_model", rnd, weights, threshold)


def keep_candidate(
    state_dir: Path, rnd: RoundInfo, weights: np.ndarray, threshold: float | None
) -> None:
    """Keep a gated round's model on disk, not served until this bank's gate adopts it."""
    _write_model(state_dir, f"candidate-round-{rnd.number}", rnd, weights, threshold)


def serve_candidate(state_dir: Path, number: int) -> bool:
    """Serve kept candidate ``number`` (adopted); False when none is kept or a newer is served."""
    weights = state_dir / f"candidate-round-{number}.npy"
    about = weights.with_suffix(".json")
    if not (weights.exists() and about.exists()) or _saved_round(state_dir) > number:
        return False
    np.save(state_dir / "global_model.npy", np.load(weights))
    (state_dir / "global_model.json").write_text(about.read_text())
    return True


def _write_model(
    state_dir: Path, stem: str, rnd: RoundInfo, weights: np.ndarray, threshold: float | None
) -> None:
    """``stem``.npy (the weights) and ``stem``.json (how to use them: what score reads)."""
    np.save(state_dir / f"{stem}.npy", weights)
    about = {
        "round": rnd.number,
        "policy": rnd.policy.to_dict(),
        "stats_round": rnd.stats_round,
        "key_epoch": rnd.key_epoch,  # keys a sketch policy's cross-bank columns at scoring
        "threshold": threshold,
    }
    (state_dir / f"{stem}.json").write_text(json.dumps(about, indent=2))


def _saved_round(state_dir: Path) -> int:
    """The round of the model kept in ``state_dir`` (0: none, or unreadable)."""
    try:
        return int(json.loads((state_dir / "global_model.json").read_text())["round"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0

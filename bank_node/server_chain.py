"""The model a training round produces at this node: the policy's server optimiser over its chain.

Every member decrypts the same average; the server step (``models.server_opt``) turns it
into the round's model, from the model the round was trained from (its base round's model,
or the policy's initial weights) and the optimiser state that base carries. That state is
a pure function of the chain of base rounds back to the first: a candidate the gate
rejected, or a round the banks dispute, is never a base, so it never advances the state of
a later round; and a node that missed rounds or lost its cache recomputes the state from
the published aggregates, each checked as any aggregate is. Each round's result is cached
in the state directory (``server-opt-round-{n}.npz``). Under FedAvg the model is the
average itself and nothing is cached or fetched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bank_node.aggregate_guard import initial_weights
from models.server_opt import FEDAVG, ServerOptParams, ServerOptState, model_digest, step
from protocol import PolicySnapshot, RoundInfo

log = logging.getLogger("bank_node")

# (round number, key epoch) -> that published round's checked average and its RoundInfo.
AverageOf = Callable[[int, str], tuple[np.ndarray, RoundInfo]]


@dataclass(frozen=True)
class Produced:
    """A round's model at this node, the optimiser state after it, and the model's digest."""

    weights: np.ndarray
    state: ServerOptState
    digest: str


def server_params(policy: PolicySnapshot) -> ServerOptParams:
    """The policy's server optimiser as ``models.server_opt`` takes it."""
    return ServerOptParams(
        optimizer=policy.server_optimizer,
        lr=policy.server_lr,
        momentum=policy.server_momentum,
        beta1=policy.server_beta1,
        beta2=policy.server_beta2,
        tau=policy.server_tau,
        alpha=policy.fedprox_mu,
    )


def cache_file(state_dir: Path, number: int) -> Path:
    """Where the node keeps round ``number``'s produced model and optimiser state."""
    return state_dir / f"server-opt-round-{number}.npz"


def kept_result(state_dir: Path, number: int) -> Produced | None:
    """Round ``number``'s cached model and optimiser state; None when absent or unreadable."""
    return _load(cache_file(state_dir, number))


class ServerChain:
    """Produced models of training rounds, for one node; ``average_of`` fetches a base's."""

    def __init__(self, state_dir: Path, average_of: AverageOf) -> None:
        self.state_dir = state_dir
        self.average_of = average_of

    def produced(self, info: RoundInfo, average: np.ndarray) -> Produced:
        """Round ``info``'s model from its checked, decrypted ``average``.

        A chain is as long as the rounds since the last FedAvg round or cached result (at
        most the policy's ``max_rounds`` or so), so recursing along it is bounded.
        """
        params = server_params(info.policy)
        if params.optimizer == FEDAVG:
            return Produced(average, ServerOptState(FEDAVG), model_digest(average))
        if (cached := kept_result(self.state_dir, info.number)) is not None:
            return cached
        base = self._base(info)
        weights, state = step(base.state, base.weights, average, params)
        result = Produced(weights, state, model_digest(weights))
        _save(cache_file(self.state_dir, info.number), result)
        log.info(
            "round %s: %s step %d from %s; model %s",
            info.number,
            params.optimizer,
            state.steps,
            f"round {info.base_round}" if info.base_round is not None else "the initial model",
            result.digest[:16],
        )
        return result

    def _base(self, info: RoundInfo) -> Produced:
        """The model ``info`` was trained from, with the state it carries."""
        if info.base_round is None:
            policy = info.policy
            start = initial_weights(info.number, policy.model_spec, policy.n_features)
            return Produced(start, ServerOptState(FEDAVG), model_digest(start))  # no state
        epoch = info.base_key_epoch or info.key_epoch
        average, base_info = self.average_of(info.base_round, epoch)
        return self.produced(base_info, average)


def _save(path: Path, result: Produced) -> None:
    """Write the cache atomically: a crash leaves the old file or none, never half of one."""
    arrays: dict[str, Any] = {"weights": result.weights, "steps": np.array(result.state.steps)}
    if result.state.m is not None:
        arrays["m"] = result.state.m
    if result.state.v is not None:
        arrays["v"] = result.state.v
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        np.savez(out, optimizer=np.array(result.state.optimizer), **arrays)
    tmp.replace(path)


def _load(path: Path) -> Produced | None:
    """The cached result; None when absent or unreadable (then recomputed from the chain)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            weights = np.array(data["weights"], dtype=np.float64)
            m = np.array(data["m"], dtype=np.float64) if "m" in data else None
            v = np.array(data["v"], dtype=np.float64) if "v" in data else None
            state = ServerOptState(str(data["optimizer"]), int(data["steps"]), m, v)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("%s unreadable, recomputing it: %s", path, exc)
        return None
    return Produced(weights, state, model_digest(weights))

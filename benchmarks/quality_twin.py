"""The CKKS column's plaintext twin: the encrypted run's last training round again, in the clear.

"Federated plaintext" (``quality_columns.federate``) is a federation of its own: it starts
from the same weights as the nodes, but after the first round its inputs differ from theirs
by the CKKS error (about 1e-7), and local Adam turns such a difference into a percent of
the weights in one round (benchmarks/RESULTS.md, "FedDyn on `small`, seed 0"). So the two
columns' AUPRC differ by what another trajectory differs by, whatever the encryption does.

The twin isolates the encryption: every bank's last-round update is recomputed from exactly
what its node used (the model it decrypted as the round's base, its decrypted normaliser,
under FedDyn its own ``h_k`` from before the round, the round's seed), the updates are
averaged in float64 by rows (``models.federation.fedavg``), and the policy's server step
applied from the base's optimiser state. The published model and the twin then differ by
the CKKS sum alone. Training is deterministic on the CPU, so each bank's recomputed update
is its node's: under FedDyn the twin checks it against ``h_k`` after the round, bit for bit.

It needs what the nodes keep in their state directories (``models/round-N``, the server
optimiser's cache, ``feddyn-own.npz``); a clip norm and a share cap are applied as the node
applies them (``bank_node.influence``). Without them it says why it cannot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bank_node.feddyn import next_own
from bank_node.server_chain import kept_result, server_params
from bank_node.training import Normalizer, train_round
from models.federation import fedavg
from models.influence import capped_rows, clip_update
from models.nets import FraudMLP, build_model, initial_vector
from models.server_opt import FEDAVG, FEDDYN, ServerOptState, step
from models.vector import vector_to_model
from protocol import PolicySnapshot
from simulation.bank_data import Bank


class TwinUnavailable(RuntimeError):
    """The encrypted run does not keep what the twin needs, or uses a bound it does not model."""


@dataclass(frozen=True)
class Twin:
    """The twin's model (one for every bank) and how far it is from the published one."""

    model: FraudMLP
    max_weight_gap: float  # max |published - twin| over the float64 weights
    round_number: int


def _policy_and_round(state: Path) -> tuple[PolicySnapshot, int]:
    meta = json.loads((state / "global_model.json").read_text())
    return PolicySnapshot.from_dict(meta["policy"]), int(meta["round"])


def _base(state: Path, policy: PolicySnapshot, last: int) -> tuple[np.ndarray, ServerOptState]:
    """The model round ``last`` trained from (the newest model the node kept before it; the
    benchmark's runs have no gate, so every published round is a base) and its state."""
    kept = (p.name.removeprefix("round-") for p in (state / "models").glob("round-*"))
    earlier = sorted(int(r) for r in kept if r.isdigit() and int(r) < last)
    if not earlier:  # the first training round: the policy's initial weights
        return initial_vector(policy.model_spec, policy.n_features), ServerOptState(FEDAVG)
    number = earlier[-1]
    weights = np.load(state / "models" / f"round-{number}" / "global_model.npy")
    if policy.server_optimizer == FEDAVG:
        return weights, ServerOptState(FEDAVG)
    cached = kept_result(state, number)
    if cached is None or not np.array_equal(cached.weights, weights):
        raise TwinUnavailable(f"{state}: round {number}'s server-optimiser cache is not its model")
    return weights, cached.state


def _bounded(
    policy: PolicySnapshot, weights: np.ndarray, n: int, base: np.ndarray, norm: Normalizer | None
) -> tuple[np.ndarray, int]:
    """The policy's clip and share cap, as ``bank_node.influence.bound_update`` applies them."""
    if policy.update_clip_norm is not None:
        weights, _ = clip_update(weights, base, policy.update_clip_norm)
    if policy.max_bank_share is not None:
        if norm is None or not norm.rows:
            raise TwinUnavailable("a share cap without the statistics round's total")
        n = capped_rows(n, norm.rows, policy.max_bank_share)
    return weights, n


def last_round_twin(demo: Path, banks: list[Bank], norms: list[Normalizer | None]) -> Twin:
    """The plaintext twin of the encrypted run in ``demo`` (``quality_columns`` layout)."""
    states = [demo / "banks" / b.slug / "state" for b in banks]
    policy, last = _policy_and_round(states[0])
    base, opt_state = _base(states[0], policy, last)
    trained = []
    for bank, state, norm in zip(banks, states, norms, strict=True):
        correction = None
        if policy.server_optimizer == FEDDYN:
            with np.load(state / "feddyn-own.npz", allow_pickle=False) as own:
                if int(own["number"]) != last:
                    raise TwinUnavailable(f"{state}: FedDyn state of round {own['number']}")
                before, after = np.array(own["before"]), np.array(own["after"])
            correction = -before
        weights, n = train_round(bank.data.normalized(norm), policy, base, last, correction)
        if correction is not None:  # the node's own step, recomputed: the same bits
            if not np.array_equal(next_own(before, weights, base, policy.fedprox_mu), after):
                raise TwinUnavailable(f"{bank.slug}: its update is not the one its node made")
        trained.append(_bounded(policy, weights, n, base, norm))
    twin, _ = step(opt_state, base, fedavg(trained), server_params(policy))
    published = np.load(states[0] / "models" / f"round-{last}" / "global_model.npy")
    model = build_model(policy.model_spec, policy.n_features)
    vector_to_model(model, twin)  # float32 parameters: compare the float64 vectors
    return Twin(model, float(np.max(np.abs(published - twin))), last)

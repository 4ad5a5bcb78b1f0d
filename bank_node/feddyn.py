"""A bank's own FedDyn state ``h_k`` (Acar et al., "Federated Learning Based on Dynamic
Regularization", ICLR 2021, Algorithm 1): the linear term of its local loss.

Under a policy whose server optimiser is ``feddyn`` the bank trains each round on
``L_k(w) - <h_k, w> + alpha/2 ||w - base||^2`` (``alpha`` the policy's ``fedprox_mu``; the
quadratic is FedProx's term) and then sets ``h_k <- h_k - alpha (w_k - base)`` from its own
trained weights, before any clip or share cap. The consortium's half, the server state
``h``, is ``models.server_opt``'s, which every node computes from the published averages.

``h_k`` is built from the bank's own updates, so it stays in the state directory, readable
by the node's user alone, like its sketches; it never leaves the node. It starts at zero,
and again whenever the policy (name and version) or the model's length changes. The file
keeps ``h_k`` as it was before the round it last trained too, so that training the same
round again (a crash between training and upload) does not count that round twice, and
so that a round whose average never took this bank's update does not count at all: in
Algorithm 1 only the clients a round sums update their ``h_k``, as only their updates
move the server's ``h``. The bank's step counts when its round is in the chain of bases
the next round trains from and the bank is in that round's manifest; otherwise (it
dropped out after training, missed the deadline, the round was aborted, refused by the
gate or disputed) the bank goes on from ``h_k`` as it was before that round.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.server_opt import FEDDYN
from protocol import PolicySnapshot, RoundInfo

log = logging.getLogger("bank_node")
STATE_FILE = "feddyn-own.npz"


def uses_feddyn(policy: PolicySnapshot) -> bool:
    return policy.server_optimizer == FEDDYN


@dataclass(frozen=True)
class Kept:
    """The file's contents: the round last trained, ``h_k`` before and after it."""

    number: int
    policy: str
    before: np.ndarray
    after: np.ndarray


def next_own(own: np.ndarray, weights: np.ndarray, base: np.ndarray, alpha: float) -> np.ndarray:
    """``h_k - alpha (w_k - base)``: the bank's state after training ``weights`` from ``base``."""
    return own - alpha * (
        np.asarray(weights, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    )


def _policy_id(policy: PolicySnapshot) -> str:
    return f"{policy.name} v{policy.version}"


class OwnDrift:
    """``h_k`` of one node, in ``state_dir/feddyn-own.npz``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILE

    def before_round(
        self, rnd: RoundInfo, length: int, counted: Callable[[int], bool] | None = None
    ) -> np.ndarray:
        """``h_k`` to train round ``rnd`` with (float64, ``length`` values).

        ``counted(n)``: whether the round ``n`` this bank last trained is a base ``rnd``
        builds on whose average holds this bank's update (None: taken as counted).
        """
        kept = self._load()
        if kept is None:
            return np.zeros(length)
        if kept.policy != _policy_id(rnd.policy) or kept.after.size != length:
            log.info(
                "round %s: FedDyn state of %s (%d weights) does not carry over to %s; "
                "starting from zero",
                rnd.number, kept.policy, kept.after.size, _policy_id(rnd.policy),
            )  # fmt: skip
            return np.zeros(length)
        if kept.number == rnd.number:  # trained again: the first attempt does not count
            return kept.before
        if counted is not None and not counted(kept.number):
            log.info(
                "round %s: round %s, which this bank last trained, is not in the average "
                "this round builds on; its FedDyn step is not counted",
                rnd.number, kept.number,
            )  # fmt: skip
            return kept.before
        return kept.after

    def after_round(
        self, rnd: RoundInfo, used: np.ndarray, weights: np.ndarray, base: np.ndarray
    ) -> np.ndarray:
        """Record ``h_k - alpha (w_k - base)`` after training ``rnd`` from ``base`` with
        ``used``; returns it."""
        after = next_own(used, weights, base, rnd.policy.fedprox_mu)
        self._save(Kept(rnd.number, _policy_id(rnd.policy), used, after))
        return after

    def _load(self) -> Kept | None:
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as data:
                return Kept(
                    int(data["number"]),
                    str(data["policy"]),
                    np.array(data["before"], dtype=np.float64),
                    np.array(data["after"], dtype=np.float64),
                )
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s unreadable, FedDyn state starts from zero: %s", self.path, exc)
            return None

    def _save(self, kept: Kept) -> None:
        """Atomically, readable by this node's user only: it is derived from its updates."""
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            np.savez(
                out,
                number=np.array(kept.number),
                policy=np.array(kept.policy),
                before=kept.before,
                after=kept.after,
            )
        tmp.replace(self.path)

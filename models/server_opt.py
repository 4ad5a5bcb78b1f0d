"""Server optimisers every node applies to the decrypted average: FedAvg(M), FedAdam/Yogi, FedDyn.

The portal never sees the average, but every member decrypts the same one, so the server
step of Reddi et al., "Adaptive Federated Optimization" (ICLR 2021, arXiv:2003.00295,
Algorithm 2) runs at the nodes instead: each node applies ``step`` to the same base, the
same average and the same state, and must get the same bits. ``model_digest`` names the
result so that nodes can compare.

Order of operations (float64 throughout; ``x`` the base the banks trained from, ``a`` the
decrypted FedAvg of their weights, ``d = a - x`` Reddi's pseudo-gradient Δ):

- ``fedavg``: ``x' = a``, the average itself: no arithmetic at all, so a FedAvg policy
  produces exactly the model it produced before server optimisers existed.
- ``fedavgm``: ``m' = momentum * m + d``; ``x' = x + lr * m'``.
- ``fedadam``: ``m' = beta1 * m + (1 - beta1) * d``; ``v' = beta2 * v + (1 - beta2) * (d * d)``;
  ``x' = x + (lr * m') / (sqrt(v') + tau)``.
- ``fedyogi``: as ``fedadam`` but ``v' = v - ((1 - beta2) * (d * d)) * sign(v - d * d)``.
- ``feddyn`` (Acar et al., "Federated Learning Based on Dynamic Regularization", ICLR 2021,
  Algorithm 1, every bank taking part): ``h' = h - alpha * d``; ``x' = a - h' / alpha``, with
  ``alpha`` the policy's FedProx mu (each bank's proximal weight). The state ``h`` (kept in
  ``m``) is the running sum of the banks' drift; each bank also keeps its own ``h_k``
  (``bank_node.feddyn``), so that the fixed point is the pooled objective's, not the one
  that unequal local work tilts towards the big banks.

Every product, sum, quotient and square root is one element-wise IEEE 754 operation,
each correctly rounded, evaluated in the order the parentheses above give; there is no
reduction, no ``pow``/``exp`` and no fused multiply-add, so any IEEE 754 platform gives the
same bits. Scalars such as ``1 - beta1`` are Python floats (doubles) computed once.
Initial state, as in the paper: ``m = 0`` and ``v = tau**2`` (Algorithm 2's
``v_{-1} >= tau^2``); no bias correction (the paper's algorithm has none).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

FEDAVG = "fedavg"
FEDDYN = "feddyn"
SERVER_OPTIMIZERS: tuple[str, ...] = (FEDAVG, "fedavgm", "fedadam", "fedyogi", FEDDYN)
ADAPTIVE = frozenset({"fedadam", "fedyogi"})


@dataclass(frozen=True)
class ServerOptParams:
    """The policy's server optimiser and its hyperparameters (unused ones are ignored)."""

    optimizer: str = FEDAVG
    lr: float = 1.0
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    alpha: float = 0.0  # FedDyn's regulariser: the policy's fedprox_mu

    def __post_init__(self) -> None:
        if self.optimizer not in SERVER_OPTIMIZERS:
            raise ValueError(
                f"server optimizer must be one of {', '.join(SERVER_OPTIMIZERS)}, "
                f"got {self.optimizer!r}"
            )
        if self.optimizer == FEDDYN and not self.alpha > 0.0:
            raise ValueError(f"feddyn needs alpha (fedprox_mu) > 0, got {self.alpha}")


@dataclass(frozen=True)
class ServerOptState:
    """What the server step carries from one round to the next.

    ``m`` is the momentum (FedAvgM), first moment (FedAdam/FedYogi) or the drift sum ``h``
    (FedDyn), ``v`` the second moment (adaptive only); both None for FedAvg. ``steps``
    counts the steps taken.
    """

    optimizer: str
    steps: int = 0
    m: np.ndarray | None = None
    v: np.ndarray | None = None

    def fits(self, params: ServerOptParams, length: int) -> bool:
        """Whether a round under ``params`` with ``length`` weights continues this state."""
        return self.optimizer == params.optimizer and (self.m is None or self.m.size == length)


def initial_state(params: ServerOptParams, length: int) -> ServerOptState:
    """The state before the first step: ``m = 0``, ``v = tau**2`` (Reddi et al., Alg. 2)."""
    if params.optimizer == FEDAVG:
        return ServerOptState(FEDAVG)
    m = np.zeros(length, dtype=np.float64)
    v = np.full(length, params.tau * params.tau) if params.optimizer in ADAPTIVE else None
    return ServerOptState(params.optimizer, 0, m, v)


def step(
    state: ServerOptState | None,
    base: np.ndarray,
    average: np.ndarray,
    params: ServerOptParams,
) -> tuple[np.ndarray, ServerOptState]:
    """One server step: ``(new_model, new_state)`` from the base, the average and the state.

    ``state`` None, or one of another optimiser or length, starts from ``initial_state``.

    Raises
    ------
    ValueError
        If ``base`` and ``average`` are not one-dimensional vectors of the same length.
    """
    x = np.asarray(base, dtype=np.float64)
    a = np.asarray(average, dtype=np.float64)
    if x.ndim != 1 or x.shape != a.shape:
        raise ValueError(f"base {x.shape} and average {a.shape} must be equal 1-D vectors")
    if params.optimizer == FEDAVG:
        return a.copy(), ServerOptState(FEDAVG)
    if state is None or not state.fits(params, x.size):
        state = initial_state(params, x.size)
    assert state.m is not None
    d = a - x
    if params.optimizer == "fedavgm":
        m = params.momentum * state.m + d
        return x + params.lr * m, ServerOptState(params.optimizer, state.steps + 1, m)
    if params.optimizer == FEDDYN:
        h = state.m - params.alpha * d
        return a - h / params.alpha, ServerOptState(FEDDYN, state.steps + 1, h)
    return _adaptive(state, x, d, params)


def _adaptive(
    state: ServerOptState, x: np.ndarray, d: np.ndarray, params: ServerOptParams
) -> tuple[np.ndarray, ServerOptState]:
    """FedAdam and FedYogi: the same first moment and update, different second moments."""
    assert state.m is not None and state.v is not None
    one_minus_b1, one_minus_b2 = 1.0 - params.beta1, 1.0 - params.beta2
    m = params.beta1 * state.m + one_minus_b1 * d
    d2 = d * d
    if params.optimizer == "fedadam":
        v = params.beta2 * state.v + one_minus_b2 * d2
    else:  # fedyogi: the second moment moves towards d² by at most (1 - beta2)·d²
        v = state.v - (one_minus_b2 * d2) * np.sign(state.v - d2)
    new = x + (params.lr * m) / (np.sqrt(v) + params.tau)
    return new, ServerOptState(params.optimizer, state.steps + 1, m, v)


def model_digest(weights: np.ndarray) -> str:
    """Hex SHA-256 of the model's little-endian float64 bytes.

    float64, not float32: the next round trains from and steps from these exact values,
    so a divergence in the last bit matters even where a float32 copy would hide it.
    """
    return hashlib.sha256(np.ascontiguousarray(weights, dtype="<f8").tobytes()).hexdigest()

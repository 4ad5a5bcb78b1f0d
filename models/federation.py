"""Plaintext FedAvg exactly as the encrypted protocol computes it, for simulations and tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# (party index, base weights or None for the initial ones, round number) -> (weights, n)
TrainFn = Callable[[int, np.ndarray | None, int], tuple[np.ndarray, int]]


def fedavg(updates: Sequence[tuple[np.ndarray, int]]) -> np.ndarray:
    """Sample-weighted average of ``(weights, n)`` pairs, the way the portal's sum is used.

    Each bank sends ``[n_k * w_k, n_k]``; the portal adds these vectors; a bank divides the
    sum by its last slot. Computing it in that order (not as ``np.average``) keeps the
    plaintext simulation as close as possible to the decrypted aggregate.
    """
    if not updates:
        raise ValueError("fedavg needs at least one update")
    total: np.ndarray | None = None
    for weights, n in updates:
        if n <= 0:
            raise ValueError(f"sample counts must be positive, got {n}")
        packed = np.append(np.asarray(weights, np.float64) * float(n), float(n))
        if total is not None and packed.shape != total.shape:
            raise ValueError(f"update of {packed.size - 1} values, expected {total.size - 1}")
        total = packed if total is None else total + packed
    assert total is not None
    return total[:-1] / total[-1]


def run_fedavg(
    train: TrainFn, n_parties: int, rounds: int, *, first_round: int = 1
) -> list[np.ndarray]:
    """Run ``rounds`` FedAvg rounds in process; return the global weights after each round.

    Round number ``r`` (from ``first_round``; a statistics round before training shifts it)
    starts every party from the previous round's average (``None`` in the first: the
    model's deterministic initial weights) and calls ``train(party, base, r)``, mirroring
    a bank node, which trains with ``seed=round number``.
    """
    history: list[np.ndarray] = []
    base: np.ndarray | None = None
    for number in range(first_round, first_round + rounds):
        updates = [train(party, base, number) for party in range(n_parties)]
        base = fedavg(updates)
        history.append(base)
    return history

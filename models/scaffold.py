"""SCAFFOLD's control variates (Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging
for Federated Learning", ICML 2020), option I: a bank's control variate is its full local
gradient at the round's base.

Pure: no I/O. As `benchmarks/server_opt.py` runs it (it is not in the round protocol:
it diverged on `small`, docs/server-optimisers.md), each round a bank computes
``c_i = full_gradient(model at base, its rows)``; the row-weighted mean over banks is the
consortium's ``c``, the gradient of the row-weighted objective at the same base. In the
next round the bank trains with ``c - c_i`` added to every gradient
(`FraudMLP.set_control_correction`), both taken at the previous base: the drift of its
data from the consortium's, as the paper's option I estimates it.
"""

from __future__ import annotations

import numpy as np
import torch

from models.data import as_training_arrays
from models.nets import FraudMLP
from models.vector import vector_length


def full_gradient(
    model: FraudMLP, x: np.ndarray, y: np.ndarray, *, chunk_rows: int = 65536
) -> np.ndarray:
    """The gradient of the model's training loss over all of ``(x, y)`` at its current
    weights, as one `model_to_vector`-ordered float64 vector.

    The loss is the one training minimises per batch (the class-weighted BCE or focal
    loss, normalised by the summed row weights), without the FedProx or SCAFFOLD terms,
    taken over every row at once in chunks. The weights are left as they were.
    """
    features, labels = as_training_arrays(x, y)
    if len(labels) == 0:
        return np.zeros(vector_length(model), dtype=np.float64)
    pos_weight = float(model.hparams["pos_weight"])
    total = float(np.where(labels > 0.5, pos_weight, 1.0).sum())
    params = list(model.parameters())
    grads = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    was_training = model.training
    model.eval()  # no dropout or batch norm today; keep it so if either is added
    try:
        for start in range(0, len(labels), chunk_rows):
            xb = torch.from_numpy(features[start : start + chunk_rows])
            yb = torch.from_numpy(labels[start : start + chunk_rows])
            weight = torch.where(yb > 0.5, pos_weight, 1.0)
            # The per-batch loss times its weight sum is the chunk's share of the full sum.
            loss = model._loss(model(xb), yb) * (weight.sum() / total)
            for acc, g in zip(grads, torch.autograd.grad(loss, params), strict=True):
                acc += g.to(torch.float64)
    finally:
        model.train(was_training)
    return np.concatenate([g.reshape(-1).numpy() for g in grads])


def weighted_mean(vectors: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """The row-weighted mean of the banks' control variates (the plaintext twin of the
    decrypted sum divided by the summed rows)."""
    rows = sum(n for _, n in vectors)
    if rows <= 0:
        raise ValueError("no rows to average")
    return sum((v * (n / rows) for v, n in vectors), np.zeros_like(vectors[0][0]))

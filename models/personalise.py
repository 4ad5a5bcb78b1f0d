"""Per-bank personalisation: fine-tune the federated model locally, chosen on validation rows.

Pure ML (no portal, no files): a bank takes the consortium's final model, tries a few ways
of fine-tuning it on its own training rows, and keeps the one that scores best on its own
*validation* rows. The test period is never read here, so the choice cannot leak it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
from torch import nn

from models.metrics import auprc
from models.nets import FraudMLP
from models.training import predict_scores, train_local

Layers = Literal["none", "head", "all"]


@dataclass(frozen=True)
class FineTune:
    """One way to fine-tune: which layers train, for how many epochs, at which learning rate.

    ``layers`` is ``"none"`` (keep the federated model as it is), ``"head"`` (only the
    last linear layer, the scorer on top of the shared features) or ``"all"``.
    """

    name: str
    layers: Layers
    epochs: int = 1
    lr: float = 1e-3


# Learning rates below the federation's 3e-3: the global model is already a good start
# and a bank's few positives would otherwise pull it towards its own typologies only.
CANDIDATES: tuple[FineTune, ...] = (
    FineTune("global", "none", epochs=0, lr=0.0),
    FineTune("head 1 epoch lr 1e-3", "head", epochs=1, lr=1e-3),
    FineTune("all 1 epoch lr 3e-4", "all", epochs=1, lr=3e-4),
    FineTune("all 1 epoch lr 1e-3", "all", epochs=1, lr=1e-3),
)


@dataclass(frozen=True)
class Personalised:
    """A bank's chosen model, which candidate it was, and every candidate's validation AUPRC."""

    model: FraudMLP
    choice: FineTune
    val_auprc: dict[str, float]


def copy_model(model: FraudMLP) -> FraudMLP:
    """A new model with ``model``'s hyperparameters and weights, sharing no tensors with it."""
    clone = type(model)(**dict(model.hparams))
    clone.load_state_dict({k: v.detach().clone() for k, v in model.state_dict().items()})
    return clone


def head_layer(model: nn.Module) -> nn.Linear:
    """The last linear layer: the one that turns the shared hidden features into a score."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no linear layer to fine-tune")
    return linears[-1]


def fine_tune(
    model: FraudMLP,
    x_train: np.ndarray,
    y_train: np.ndarray,
    tune: FineTune,
    *,
    batch_size: int,
    seed: int = 0,
) -> FraudMLP:
    """A copy of ``model`` trained on the bank's rows as ``tune`` says; ``model`` is untouched."""
    tuned = copy_model(model)
    if tune.layers == "none" or tune.epochs < 1:
        return tuned
    trainable = list(head_layer(tuned).parameters()) if tune.layers == "head" else None
    with _only_trainable(tuned, trainable):
        train_local(
            tuned, x_train, y_train, epochs=tune.epochs, batch_size=batch_size, lr=tune.lr,
            seed=seed,
        )  # fmt: skip
    return tuned


def personalise(
    model: FraudMLP,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    *,
    batch_size: int,
    candidates: Sequence[FineTune] = CANDIDATES,
    seed: int = 0,
) -> Personalised:
    """Every candidate fine-tuned on ``train``; the one with the best AUPRC on ``validation``.

    Ties and validation periods without a positive (AUPRC NaN) keep the earliest candidate,
    so with ``CANDIDATES`` a bank that cannot tell keeps the federated model unchanged.
    """
    if not candidates:
        raise ValueError("personalise needs at least one candidate")
    best: tuple[float, FineTune, FraudMLP] | None = None
    val_auprc: dict[str, float] = {}
    for tune in candidates:
        tuned = fine_tune(model, *train, tune, batch_size=batch_size, seed=seed)
        score = auprc(validation[1], predict_scores(tuned, validation[0]))
        val_auprc[tune.name] = score
        rank = score if math.isfinite(score) else -math.inf
        if best is None or rank > best[0]:
            best = (rank, tune, tuned)
    assert best is not None  # candidates is not empty
    return Personalised(model=best[2], choice=best[1], val_auprc=val_auprc)


@contextmanager
def _only_trainable(model: nn.Module, trainable: list[nn.Parameter] | None) -> Iterator[None]:
    """Freeze every parameter but ``trainable`` (None: train all), and restore afterwards.

    A frozen parameter gets no gradient, so Adam (and its weight decay) leaves it exactly
    as it was.
    """
    keep = None if trainable is None else {id(p) for p in trainable}
    previous = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in previous:
        p.requires_grad_(keep is None or id(p) in keep)
    try:
        yield
    finally:
        for p, flag in previous:
            p.requires_grad_(flag)

"""The fraud-scoring LightningModule (an MLP with optional FedProx and SCAFFOLD correction)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from models.vector import model_to_vector, vector_length

LOSSES = ("bce", "focal")
SPEC_KEYS = {
    "kind",
    "hidden",
    "seed",
    "loss",
    "lr",
    "pos_weight",
    "focal_gamma",
    "fedprox_mu",
    "weight_decay",
}


class FraudMLP(pl.LightningModule):
    """Feed-forward scorer returning one logit per transaction.

    Parameters
    ----------
    n_features : input width (``len(FEATURE_NAMES)``).
    hidden : sizes of the hidden ReLU layers. No batch norm: the model has no buffers,
        so its flat vector is exactly its parameters.
    lr, weight_decay : Adam settings.
    pos_weight : weight of positive rows in the loss, to counter the class imbalance.
    loss : ``"bce"`` (weighted binary cross-entropy) or ``"focal"`` (focal loss with
        ``focal_gamma``, also weighted by ``pos_weight``).
    fedprox_mu : strength of the FedProx term ``mu/2 * ||w - w_global||^2``; it only
        acts once `set_fedprox_reference` has been given the global weights.
    seed : initial weights depend on this seed alone (not on torch's global RNG).
    """

    def __init__(
        self,
        n_features: int,
        hidden: Sequence[int] = (32, 16),
        lr: float = 1e-3,
        pos_weight: float = 1.0,
        loss: str = "bce",
        focal_gamma: float = 2.0,
        fedprox_mu: float = 0.0,
        weight_decay: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.save_hyperparameters()
        # nn.Linear draws a throwaway init from the global RNG; keep the caller's stream intact.
        with torch.random.fork_rng(devices=[]):
            self.net = _mlp(n_features, hidden)
        _init_weights(self.net, seed)
        self._fedprox_reference: list[torch.Tensor] | None = None
        self._control_correction: list[torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def _pieces(self, vec: np.ndarray | torch.Tensor, what: str) -> list[torch.Tensor]:
        """A detached copy of a `model_to_vector` vector, cut to the shapes of the parameters."""
        flat = torch.as_tensor(
            np.asarray(vec, dtype=np.float64) if not torch.is_tensor(vec) else vec
        )
        flat = flat.detach().to(torch.float64).reshape(-1)
        if flat.numel() != vector_length(self):
            raise ValueError(f"{what} has {flat.numel()} values, model has {vector_length(self)}")
        pieces, offset = [], 0
        for param in self.parameters():
            pieces.append(
                flat[offset : offset + param.numel()].view_as(param).to(param.dtype).clone()
            )
            offset += param.numel()
        return pieces

    def set_fedprox_reference(self, vec: np.ndarray | torch.Tensor | None) -> None:
        """Keep a detached copy of the global weights (a `model_to_vector` vector), or clear it."""
        self._fedprox_reference = None if vec is None else self._pieces(vec, "FedProx reference")

    def set_control_correction(self, vec: np.ndarray | torch.Tensor | None) -> None:
        """SCAFFOLD's drift correction ``c - c_i`` (Karimireddy et al., ICML 2020), or none.

        Training adds ``<w, c - c_i>`` to the loss, so every step's gradient becomes
        ``g - c_i + c``: the bank's own gradient with its estimated drift from the
        consortium's gradient taken out.
        """
        self._control_correction = (
            None if vec is None else self._pieces(vec, "control-variate correction")
        )

    def _proximal_term(self) -> torch.Tensor:
        mu = float(self.hparams["fedprox_mu"])
        if mu == 0 or self._fedprox_reference is None:
            return torch.zeros((), device=self.device)
        squares = [
            ((p - ref.to(p.device)) ** 2).sum()
            for p, ref in zip(self.parameters(), self._fedprox_reference, strict=True)
        ]
        return mu / 2 * torch.stack(squares).sum()

    def _control_term(self) -> torch.Tensor:
        if self._control_correction is None:
            return torch.zeros((), device=self.device)
        products = [
            (p * corr.to(p.device)).sum()
            for p, corr in zip(self.parameters(), self._control_correction, strict=True)
        ]
        return torch.stack(products).sum()

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        weight = torch.where(y > 0.5, float(self.hparams["pos_weight"]), 1.0)
        bce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        if self.hparams["loss"] == "focal":
            p_true = torch.exp(-bce)  # probability given to the true class
            bce = bce * (1 - p_true) ** float(self.hparams["focal_gamma"])
        return (weight * bce).sum() / weight.sum()

    def _common_step(self, batch: Sequence[torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        loss = self._loss(self(x), y)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        if stage == "train":
            loss = loss + self._proximal_term() + self._control_term()
        return loss

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "train")

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "val")

    def test_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._common_step(batch, "test")

    def predict_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return torch.sigmoid(self(batch[0]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.parameters(),
            lr=float(self.hparams["lr"]),
            weight_decay=float(self.hparams["weight_decay"]),
        )


def _mlp(n_features: int, hidden: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_features
    for size in hidden:
        layers += [nn.Linear(width, int(size)), nn.ReLU()]
        width = int(size)
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


def _init_weights(net: nn.Module, seed: int) -> None:
    """PyTorch's default Linear initialisation, drawn from a private seeded generator."""
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                bound = 1 / math.sqrt(layer.in_features)
                layer.bias.uniform_(-bound, bound, generator=generator)


def build_model(spec: Mapping[str, Any], n_features: int) -> FraudMLP:
    """Build the model a round policy's spec describes.

    Example spec: ``{"kind": "mlp", "hidden": [32, 16], "seed": 7, "loss": "bce"}``.

    Same spec and ``n_features`` give the same initial weights in any process. Keys
    besides ``kind`` are the `FraudMLP` arguments (``hidden``, ``seed``, ``loss``, ``lr``,
    ``pos_weight``, ``focal_gamma``, ``fedprox_mu``, ``weight_decay``); others are refused
    so that a typo cannot silently fall back to a default.
    """
    if spec.get("kind") != "mlp":
        raise ValueError(f"unsupported model kind {spec.get('kind')!r}; only 'mlp' exists")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise ValueError(f"unknown model spec keys {unknown}; allowed: {sorted(SPEC_KEYS)}")
    kwargs = {k: v for k, v in spec.items() if k != "kind"}
    if "hidden" in kwargs:
        kwargs["hidden"] = tuple(int(h) for h in kwargs["hidden"])
    return FraudMLP(n_features=n_features, **kwargs)


def initial_vector(spec: Mapping[str, Any], n_features: int) -> np.ndarray:
    """The spec's initial weights as one vector: what a round without a base starts from.

    They depend on the spec's ``seed`` alone (``_init_weights`` draws from a private
    generator, never torch's global one), so every node computes the same vector.
    """
    return model_to_vector(build_model(spec, n_features))

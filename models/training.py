"""Local training and scoring with Lightning, as a bank node runs them each round."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy

from models.data import FraudDataModule, StreamDataModule
from models.stream_data import StreamSpec, count_rows

_CHATTY_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "pytorch_lightning.accelerators.cuda")


@dataclass(frozen=True)
class TrainerSettings:
    """Where Lightning trains: its ``accelerator``, ``devices``, ``num_nodes`` and ``strategy``.

    The default is one CPU process, as a node trained before these settings existed.
    ``timeout_seconds`` (``ddp_spawn`` only): how long a process waits for the others at the
    rendezvous and at each collective before failing, instead of torch's 30 minutes.
    """

    accelerator: str = "cpu"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    timeout_seconds: float | None = None

    def trainer_kwargs(self) -> dict[str, Any]:
        strategy: str | DDPStrategy = self.strategy
        if self.strategy == "ddp_spawn" and self.timeout_seconds is not None:
            timeout = timedelta(seconds=self.timeout_seconds)
            strategy = DDPStrategy(start_method="spawn", timeout=timeout)
        return {
            "accelerator": self.accelerator,
            "devices": self.devices,
            "num_nodes": self.num_nodes,
            "strategy": strategy,
        }


def _trainer(
    epochs: int,
    settings: TrainerSettings,
    limit_val_batches: int | None,
    max_steps: int = -1,
) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs, max_steps=max_steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, deterministic=True,
        num_sanity_val_steps=0, limit_val_batches=limit_val_batches, **settings.trainer_kwargs(),
    )  # fmt: skip


def train_local(
    model: pl.LightningModule,
    x_train: np.ndarray,
    y_train: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float | None = None,
    seed: int = 0,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    shuffle: bool = True,
    settings: TrainerSettings = TrainerSettings(),
    max_steps: int | None = None,
) -> int:
    """Train ``model`` in place on one bank's rows and return the number of training rows.

    ``max_steps``: exactly that many optimiser steps instead of ``epochs`` epochs, however
    many rows the bank holds (the data cycles, reshuffled each epoch).
    ``lr`` overrides the model's learning rate for this call only. Shuffling and any
    randomness inside the model follow ``seed`` and leave torch's global RNG untouched;
    the thread count is the caller's choice (``torch.set_num_threads``).
    """
    if epochs < 1 or batch_size < 1 or (max_steps is not None and max_steps < 1):
        raise ValueError("epochs, batch_size and max_steps must be positive")
    if max_steps is not None:
        epochs = -(-max_steps // -(-len(x_train) // batch_size))  # enough to reach max_steps
    data = FraudDataModule(
        x_train, y_train, x_val=x_val, y_val=y_val, batch_size=batch_size, seed=seed,
        shuffle=shuffle,
    )  # fmt: skip
    # Without validation data, validation is switched off rather than left to warn.
    limit_val_batches = None if data.has_validation else 0
    with _learning_rate(model, lr), _quiet(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trainer = _trainer(epochs, settings, limit_val_batches, max_steps or -1)
        trainer.fit(model, datamodule=data)
    return len(x_train)


def train_stream(
    model: pl.LightningModule,
    spec: StreamSpec,
    *,
    epochs: int,
    lr: float | None = None,
    seed: int = 0,
    settings: TrainerSettings = TrainerSettings(),
    workers: int = 0,
) -> int:
    """Train ``model`` in place on the rows ``spec`` streams; return their number.

    The loss, labels and weights are the model's own, as in `train_local`. Under a
    distributed ``settings.strategy`` the weights the caller's ``model`` ends with are those
    every process agreed on (``ddp_spawn`` loads rank zero's back into this process), so the
    caller produces its update once.
    """
    if epochs < 1:
        raise ValueError("epochs must be positive")
    rows = count_rows(spec)
    data = StreamDataModule(spec, workers=workers)
    with _learning_rate(model, lr), _quiet(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _trainer(epochs, settings, 0).fit(model, datamodule=data)
    return rows


def predict_scores(model: torch.nn.Module, x: np.ndarray, *, batch_size: int = 8192) -> np.ndarray:
    """Sigmoid probabilities (float64) for the rows of ``x``, in eval mode without gradients."""
    features = np.ascontiguousarray(x, dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            parts = [
                torch.sigmoid(model(torch.from_numpy(features[i : i + batch_size])))
                for i in range(0, len(features), batch_size)
            ]
    finally:
        model.train(was_training)
    if not parts:
        return np.zeros(0, dtype=np.float64)
    return torch.cat(parts).to(torch.float64).numpy()


@contextmanager
def _learning_rate(model: pl.LightningModule, lr: float | None) -> Iterator[None]:
    if lr is None:
        yield
        return
    if "lr" not in model.hparams:
        raise ValueError(f"{type(model).__name__} has no 'lr' hyperparameter to override")
    previous = model.hparams["lr"]
    model.hparams["lr"] = lr
    try:
        yield
    finally:
        model.hparams["lr"] = previous


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence Lightning's per-fit banners and hints and undo its global side effects.

    Nodes train every round, so the banners would flood their logs; the "few workers"
    hint does not apply to in-memory tensors.
    """
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [log.level for log in loggers]
    # Trainer(deterministic=True) switches torch's global flag on and leaves it on.
    deterministic = torch.are_deterministic_algorithms_enabled()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings(
            "ignore", message=".*You defined a `validation_step` but have no `val_dataloader`"
        )
        # Lightning 2.6 still calls a pytree API that torch 2.13 deprecates.
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
        for log in loggers:
            log.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for log, level in zip(loggers, levels, strict=True):
                log.setLevel(level)
            torch.use_deterministic_algorithms(deterministic)

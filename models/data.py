"""LightningDataModules: over in-memory (features, labels) arrays, or streamed from Parquet."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from models.stream_data import StreamDataset, StreamSpec


def as_training_arrays(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes and values and return float32 copies-or-views of ``x`` and ``y``."""
    features = np.ascontiguousarray(x, dtype=np.float32)
    labels = np.ascontiguousarray(y, dtype=np.float32).ravel()
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D array, got shape {features.shape}")
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinite values")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return features, labels


class FraudDataModule(pl.LightningDataModule):
    """Train (and optionally validation) loaders with seeded, reproducible shuffling.

    Validation data is either given (``x_val``/``y_val``) or the last ``val_fraction``
    of the training rows, which callers pass in time order, so validation stays later
    in time than training.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        x_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        val_fraction: float = 0.0,
        batch_size: int = 256,
        eval_batch_size: int = 4096,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        super().__init__()
        if (x_val is None) != (y_val is None):
            raise ValueError("give both x_val and y_val, or neither")
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.save_hyperparameters(ignore=["x", "y", "x_val", "y_val"])
        self._arrays = (x, y, x_val, y_val)
        self.train_set: BatchedTensorDataset | None = None
        self.val_set: BatchedTensorDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        x, y, x_val, y_val = self._arrays
        features, labels = as_training_arrays(x, y)
        if x_val is not None and y_val is not None:
            self.val_set = _dataset(*as_training_arrays(x_val, y_val))
        elif self.hparams["val_fraction"] > 0:
            cut = len(features) - round(len(features) * self.hparams["val_fraction"])
            self.val_set = _dataset(features[cut:], labels[cut:])
            features, labels = features[:cut], labels[:cut]
        self.train_set = _dataset(features, labels)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        generator = torch.Generator().manual_seed(int(self.hparams["seed"]))
        return DataLoader(
            self.train_set,
            batch_size=self.hparams["batch_size"],
            shuffle=bool(self.hparams["shuffle"]),
            generator=generator,
            collate_fn=_as_batch,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []  # Lightning then skips validation
        return DataLoader(
            self.val_set, batch_size=self.hparams["eval_batch_size"], collate_fn=_as_batch
        )

    @property
    def has_validation(self) -> bool:
        """Whether `setup` will produce validation data (known before `setup` runs)."""
        return self._arrays[2] is not None or self.hparams["val_fraction"] > 0


class StreamDataModule(pl.LightningDataModule):
    """The training rows of Parquet feature files, streamed (`models.stream_data`); no validation.

    ``workers`` DataLoader processes each keep every ``workers``-th batch; they persist
    across epochs, so each one's epoch counter (its shuffle seed) moves on.
    """

    def __init__(self, spec: StreamSpec, *, workers: int = 0) -> None:
        super().__init__()
        self.spec = spec
        self.workers = workers
        self.train_set: StreamDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = StreamDataset(self.spec)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        # batch_size=None: the dataset yields whole batches (one tensor per batch, not per row).
        return DataLoader(
            self.train_set,
            batch_size=None,
            num_workers=self.workers,
            persistent_workers=self.workers > 0,
        )


class BatchedTensorDataset(TensorDataset):
    """A `TensorDataset` that hands a DataLoader a whole batch by one index per tensor.

    The DataLoader's fetcher calls ``__getitems__`` with a batch's row numbers when a dataset
    has it; ``x[rows]`` is the batch the default collation would stack from single rows
    (the same values, order and shape), without a Python call and a tensor per row, which
    dominated a small model's training step. Samplers are untouched, so shuffling (and
    Lightning's distributed sampler) pick the same rows as before.
    """

    def __getitems__(self, rows: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(rows, dtype=torch.long)
        return tuple(tensor[index] for tensor in self.tensors)


def _as_batch(batch: Any) -> Any:
    """The collation of a `BatchedTensorDataset` batch: it is one already."""
    return batch


def _dataset(features: np.ndarray, labels: np.ndarray) -> BatchedTensorDataset:
    return BatchedTensorDataset(torch.from_numpy(features), torch.from_numpy(labels))

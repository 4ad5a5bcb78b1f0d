"""FraudDataModule: splits and reproducible shuffling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from models.data import FraudDataModule

X = np.arange(40, dtype=np.float32).reshape(20, 2)
Y = (np.arange(20) % 5 == 0).astype(np.float32)


def first_batch(seed: int) -> torch.Tensor:
    data = FraudDataModule(X, Y, batch_size=8, seed=seed)
    data.setup("fit")
    return next(iter(data.train_dataloader()))[0]


def test_the_same_seed_shuffles_the_same_way_and_another_seed_differently() -> None:
    assert torch.equal(first_batch(1), first_batch(1))
    assert not torch.equal(first_batch(1), first_batch(2))


def test_val_fraction_holds_out_the_latest_rows() -> None:
    data = FraudDataModule(X, Y, val_fraction=0.25)
    data.setup("fit")
    assert data.train_set is not None and data.val_set is not None
    assert len(data.train_set) == 15
    assert data.val_set.tensors[0][:, 0].tolist() == [30, 32, 34, 36, 38]


def test_given_validation_arrays_are_used_as_they_are() -> None:
    data = FraudDataModule(X, Y, x_val=X[:3], y_val=Y[:3])
    assert data.has_validation
    data.setup("fit")
    assert data.val_set is not None and len(data.val_set) == 3
    assert data.train_set is not None and len(data.train_set) == 20


def test_without_validation_data_the_val_loader_is_empty() -> None:
    data = FraudDataModule(X, Y)
    data.setup("fit")
    assert not data.has_validation and data.val_dataloader() == []


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (X[:, 0], Y, "2-D"),
        (X, Y[:5], "20 feature rows but 5 labels"),
        (np.full((2, 2), np.nan), np.zeros(2), "NaN"),
        (X, Y * 2, "0 or 1"),
    ],
)
def test_malformed_arrays_are_refused_at_setup(x: np.ndarray, y: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FraudDataModule(x, y).setup("fit")


@pytest.mark.parametrize("shuffle", [True, False])
def test_whole_batches_are_the_rows_per_row_collation_would_stack(shuffle: bool) -> None:
    # 23 rows in batches of 8: the last batch is short. The per-row DataLoader is the one
    # FraudDataModule used before it fetched a batch by one index per tensor.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(23, 5)).astype(np.float32)
    y = (rng.random(23) < 0.3).astype(np.float32)
    data = FraudDataModule(x, y, batch_size=8, seed=11, shuffle=shuffle)
    data.setup("fit")
    rows = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    per_row = DataLoader(
        rows, batch_size=8, shuffle=shuffle, generator=torch.Generator().manual_seed(11)
    )
    loader = data.train_dataloader()  # Lightning asks once and iterates it every epoch
    for epoch in range(2):  # the generator moves on between epochs in both
        ours, theirs = list(loader), list(per_row)
        assert [b[0].shape[0] for b in ours] == [8, 8, 7], epoch
        for (bx, by), (rx, ry) in zip(ours, theirs, strict=True):
            assert torch.equal(bx, rx) and torch.equal(by, ry)
            assert bx.dtype == rx.dtype and by.shape == ry.shape

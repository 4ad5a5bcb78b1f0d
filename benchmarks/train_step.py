"""Seconds per training step of the node's MLP: rows fetched one by one against whole batches.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/train_step.py [--rows 512000] [--repeats 3]``.
Both ways train the same model (the demo policy's MLP 32-16, batch 256, one thread as a node)
with `models.training.train_local` on the same random rows in the same process, alternating;
"per row" swaps `models.data`'s dataset for a plain `TensorDataset` (one Python call and one
tensor per row, stacked by the DataLoader's default collation), the way `FraudDataModule`
fetched rows before. Prints the median seconds per step of each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset, default_collate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import models.data as data_module  # noqa: E402
from models.nets import build_model  # noqa: E402
from models.training import train_local  # noqa: E402

SPEC = {"kind": "mlp", "hidden": [32, 16], "seed": 7, "loss": "bce", "pos_weight": 10.0}
BATCH = 256


def per_row_dataset(features: np.ndarray, labels: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.from_numpy(features), torch.from_numpy(labels))


def seconds_per_step(x: np.ndarray, y: np.ndarray, per_row: bool) -> float:
    saved = data_module._dataset, data_module._as_batch
    if per_row:
        setattr(data_module, "_dataset", per_row_dataset)  # noqa: B010 (a typed module slot)
        setattr(data_module, "_as_batch", default_collate)  # noqa: B010
    try:
        model = build_model({**SPEC, "lr": 3e-3}, x.shape[1])
        start = time.perf_counter()
        train_local(model, x, y, epochs=1, batch_size=BATCH, lr=3e-3, seed=0)
        return (time.perf_counter() - start) / -(-len(x) // BATCH)
    finally:
        setattr(data_module, "_dataset", saved[0])  # noqa: B010
        setattr(data_module, "_as_batch", saved[1])  # noqa: B010


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=512_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, 44)).astype(np.float32)
    y = (rng.random(args.rows) < 0.01).astype(np.float32)
    figures: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.repeats):
        for per_row in (True, False):
            figures[per_row].append(seconds_per_step(x, y, per_row))
    row, batch = statistics.median(figures[True]), statistics.median(figures[False])
    print(f"{args.rows:,} rows, batch {BATCH}, {args.repeats} alternating runs of one epoch each")
    print(f"per row (before)   {row * 1000:7.2f} ms/step")
    print(f"whole batches      {batch * 1000:7.2f} ms/step")
    print(f"ratio              {batch / row:7.3f}x the per-row time")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Probe the tiny synthetic world: generation time, sizes, and local vs pooled AUPRC per bank.

Run: ``.venv/bin/python benchmarks/local_baseline_probe.py [--seed 0] [--epochs 5]``.
"Pooled" trains one model on every bank's training split together: the centralised
upper bound that federation should approach. Per-typology columns give AUPRC on the
bank's test rows restricted to benign rows plus that typology's rows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bank_node.data import chronological_split, load_ibm_csv
from models.features import compute_features
from models.metrics import auprc, recall_at_budget
from models.nets import build_model
from models.training import predict_scores, train_local
from simulation.world import TYPOLOGIES, generate_world

SPEC = {"kind": "mlp", "hidden": [32, 16], "seed": 7, "pos_weight": 10.0, "lr": 3e-3}


def _bank(path: Path) -> dict[str, np.ndarray]:
    df = load_ibm_csv(path)
    started = time.perf_counter()
    x = compute_features(df)
    seconds = time.perf_counter() - started
    typology = pd.read_csv(path, usecols=["Typology"], dtype=str, keep_default_na=False)[
        "Typology"
    ].to_numpy()
    parts = [df.index.get_indexer(p.index) for p in chronological_split(df)]
    return {
        "x": x,
        "y": df["label"].to_numpy(),
        "typ": typology,
        "parts": parts,
        "feature_s": seconds,
    }


def _fit(x: np.ndarray, y: np.ndarray, epochs: int) -> torch.nn.Module:
    model = build_model(SPEC, x.shape[1])
    train_local(model, x, y, epochs=epochs, batch_size=256)
    return model


def _report(name: str, model: torch.nn.Module, bank: dict[str, np.ndarray]) -> str:
    test = bank["parts"][2]
    y, typ = bank["y"][test], bank["typ"][test]
    scores = predict_scores(model, bank["x"][test])
    per_typ = []
    for t in TYPOLOGIES:
        keep = (y == 0) | (typ == t)
        per_typ.append(f"{auprc(y[keep], scores[keep]):.2f}" if (typ == t).any() else "  - ")
    overall = f"auprc {auprc(y, scores):.3f}  recall@0.5% {recall_at_budget(y, scores):.3f}"
    return f"{name:7s} {overall}  by typology {' '.join(per_typ)}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--preset", default="tiny")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        manifest = generate_world(Path(tmp), preset=args.preset, seed=args.seed)
        print(f"generate {args.preset} seed={args.seed}: {time.perf_counter() - started:.2f}s")
        banks = {b: _bank(Path(tmp) / info["file"]) for b, info in manifest["banks"].items()}
    pooled_x = np.concatenate([b["x"][b["parts"][0]] for b in banks.values()])
    pooled_y = np.concatenate([b["y"][b["parts"][0]] for b in banks.values()])
    pooled = _fit(pooled_x, pooled_y, args.epochs)
    print(f"typology order: {' '.join(TYPOLOGIES)}")
    for bank_id, bank in banks.items():
        info = manifest["banks"][bank_id]
        test_y = bank["y"][bank["parts"][2]]
        rate = info["laundering_rows"] / info["rows"]
        print(
            f"bank {bank_id}: rows {info['rows']}, laundering {rate:.2%}, "
            f"features {bank['feature_s']:.2f}s, test base rate {test_y.mean():.4f}, "
            f"trained on {info['train_typologies']}"
        )
        started = time.perf_counter()
        local = _fit(bank["x"][bank["parts"][0]], bank["y"][bank["parts"][0]], args.epochs)
        print(f"  local fit {time.perf_counter() - started:.1f}s")
        print("  " + _report("local", local, bank))
        print("  " + _report("pooled", pooled, bank))


if __name__ == "__main__":
    main()

"""What record-level DP-SGD costs: federated AUPRC on the tiny world at epsilon = inf, 8, 2.

Run: ``.venv/bin/python benchmarks/privacy.py [--rounds 5] [--epochs 2] [--seeds 0 1 2]``.

In-process plaintext FedAvg (the aggregate the encrypted rounds compute, without the
CKKS round trip) over the member banks of ``generate_world(preset="tiny")``. Features
are standardised with the pooled training moments, as the statistics round does. Every
row trains the same rounds, local epochs, batch size and learning rate:

- ``inf``: `models.training.train_local` (Lightning, no DP), what nodes run today;
- ``inf clip``: `train_local_dp` with noise multiplier 0: per-sample clipping alone;
- ``8`` / ``2``: `train_local_dp` with the noise derived for the whole plan (every bank
  its own multiplier: it depends on the bank's row count), delta 1e-5.

AUPRC is of the final global model on each bank's held-out last days; "pooled" ranks
all banks' test rows together. Mean and spread are over ``--seeds`` (batch order, and
for DP the Poisson batches and the noise).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bank_node.data import chronological_split, load_ibm_csv
from models.features import compute_features
from models.metrics import auprc
from models.nets import build_model
from models.privacy import DPConfig, plan_round, train_local_dp
from models.training import predict_scores, train_local
from models.vector import model_to_vector, vector_to_model
from simulation.world import generate_world

SPEC = {"kind": "mlp", "hidden": [32, 16], "seed": 7, "pos_weight": 10.0}
DELTA = 1e-5


@dataclass
class Bank:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass
class Outcome:
    bank_auprc: list[float]
    pooled_auprc: float
    epsilon: float  # the largest cumulative epsilon any bank spent
    seconds: float


def load_banks(preset: str, seed: int) -> list[Bank]:
    banks = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest = generate_world(Path(tmp), preset=preset, seed=seed)
        for info in manifest["banks"].values():
            frame = load_ibm_csv(Path(tmp) / info["file"])
            x = compute_features(frame)
            y = frame["label"].to_numpy(dtype=np.float32)
            train, _, test = (frame.index.get_indexer(p.index) for p in chronological_split(frame))
            banks.append(Bank(x[train], y[train], x[test], y[test]))
    pooled = np.concatenate([b.x_train for b in banks]).astype(np.float64)
    mean, std = pooled.mean(axis=0), np.maximum(pooled.std(axis=0), 1e-3)
    for b in banks:
        b.x_train = ((b.x_train - mean) / std).astype(np.float32)
        b.x_test = ((b.x_test - mean) / std).astype(np.float32)
    return banks


def federate(
    banks: list[Bank], args: argparse.Namespace, dp: DPConfig | None, seed: int
) -> Outcome:
    started = time.perf_counter()
    spec = {**SPEC, "lr": args.lr}
    n_features = banks[0].x_train.shape[1]
    global_vec = model_to_vector(build_model(spec, n_features))
    states: list[dict | None] = [None] * len(banks)
    epsilon = 0.0 if dp is not None else float("inf")
    for rnd in range(args.rounds):
        updates, counts = [], []
        for k, bank in enumerate(banks):
            model = build_model(spec, n_features)
            vector_to_model(model, global_vec)
            run_seed = 10_000 * seed + 100 * rnd + k
            if dp is None:
                n = train_local(model, bank.x_train, bank.y_train, epochs=args.epochs,
                                batch_size=args.batch_size, lr=args.lr, seed=run_seed)  # fmt: skip
            else:
                n, spent, states[k] = train_local_dp(
                    model, bank.x_train, bank.y_train, epochs=args.epochs,
                    batch_size=args.batch_size, lr=args.lr, seed=run_seed, dp=dp,
                    accountant_state=states[k],
                )  # fmt: skip
                epsilon = max(epsilon, spent)
            updates.append(model_to_vector(model) * n)
            counts.append(n)
        global_vec = np.sum(updates, axis=0) / np.sum(counts)
    model = build_model(spec, n_features)
    vector_to_model(model, global_vec)
    scores = [predict_scores(model, b.x_test) for b in banks]
    return Outcome(
        bank_auprc=[auprc(b.y_test, s) for b, s in zip(banks, scores, strict=True)],
        pooled_auprc=auprc(np.concatenate([b.y_test for b in banks]), np.concatenate(scores)),
        epsilon=epsilon,
        seconds=time.perf_counter() - started,
    )


def settings(args: argparse.Namespace) -> list[tuple[str, DPConfig | None]]:
    plan = {"planned_rounds": args.rounds, "local_epochs": args.epochs,
            "batch_size": args.batch_size, "max_grad_norm": args.clip, "delta": DELTA}  # fmt: skip
    rows: list[tuple[str, DPConfig | None]] = [
        ("inf", None),
        ("inf clip", DPConfig(target_epsilon=None, noise_multiplier=0.0, **plan)),
    ]
    return rows + [(f"{eps:g}", DPConfig(target_epsilon=eps, **plan)) for eps in args.epsilons]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[8.0, 2.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    banks = load_banks(args.preset, args.world_seed)
    sizes = ", ".join(str(len(b.y_train)) for b in banks)
    base = np.concatenate([b.y_test for b in banks]).mean()
    print(f"{args.preset} world seed {args.world_seed}: {len(banks)} banks, train rows {sizes}; "
          f"test base rate {base:.4f}")  # fmt: skip
    print(f"{args.rounds} rounds x {args.epochs} local epochs, batch {args.batch_size}, "
          f"lr {args.lr}, clip {args.clip}, delta {DELTA:g}, seeds {args.seeds}")  # fmt: skip
    print()
    print(f"{'epsilon':>9} {'spent':>6} {'noise mult.':>12} {'bank AUPRC (mean)':>18} "
          f"{'pooled AUPRC':>13} {'s/run':>6}")  # fmt: skip
    for label, dp in settings(args):
        outcomes = [federate(banks, args, dp, seed) for seed in args.seeds]
        per_bank = [float(np.mean(o.bank_auprc)) for o in outcomes]
        pooled = [o.pooled_auprc for o in outcomes]
        sigmas = "-"
        if dp is not None and dp.enabled:
            values = [plan_round(dp, len(b.y_train)).noise_multiplier for b in banks]
            sigmas = f"{min(values):.2f}-{max(values):.2f}" if max(values) > 0 else "0"
        print(f"{label:>9} {max(o.epsilon for o in outcomes):>6.2f} {sigmas:>12} "
              f"{np.mean(per_bank):>11.3f} ±{np.std(per_bank):.3f} "
              f"{np.mean(pooled):>6.3f} ±{np.std(pooled):.3f} "
              f"{np.mean([o.seconds for o in outcomes]):>6.1f}")  # fmt: skip


if __name__ == "__main__":
    main()

"""Federated with cross-bank features against centralised without them: the issue's target.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/cross_bank_federated.py --preset tiny``
(defaults: 4 banks, world 42, model seeds 1 and 2, ε = 1; ``--no-noise`` for exact
sketches). The same worlds, sketches and standardisation as ``cross_bank_sketch.py``
(whose helpers this imports). Columns, each the mean test AUPRC over the banks:

- centralised: one model on every bank's training rows pooled, ``--epochs`` epochs;
- federated: plaintext FedAvg (``models.federation.run_fedavg``, as the encrypted protocol
  computes it) for ``--rounds`` rounds of ``--local-epochs`` epochs at each bank;

each without and with the cross-bank columns.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cross_bank_sketch import SPEC, SUBSETS, Bank, banks_of, pooled_normalizer  # noqa: E402

from models.federation import run_fedavg  # noqa: E402
from models.metrics import auprc  # noqa: E402
from models.nets import build_model  # noqa: E402
from models.training import predict_scores, train_local  # noqa: E402
from models.vector import model_to_vector, vector_to_model  # noqa: E402
from simulation.world import generate_world  # noqa: E402

LR = 3e-3


def mean_test_auprc(model: torch.nn.Module, xs: list[np.ndarray], banks: list[Bank]) -> float:
    scores = [
        auprc(b.y[b.parts[2]], predict_scores(model, x[b.parts[2]]))
        for x, b in zip(xs, banks, strict=True)
    ]
    return float(np.mean(scores))


def centralised(xs: list[np.ndarray], banks: list[Bank], seed: int, epochs: int) -> float:
    x = np.vstack([x[b.parts[0]] for x, b in zip(xs, banks, strict=True)])
    y = np.concatenate([b.y[b.parts[0]] for b in banks])
    model = build_model({**SPEC, "seed": seed, "lr": LR}, x.shape[1])
    train_local(model, x, y, epochs=epochs, batch_size=256, lr=LR, seed=seed)
    return mean_test_auprc(model, xs, banks)


def federated(
    xs: list[np.ndarray], banks: list[Bank], seed: int, args: argparse.Namespace
) -> float:
    spec = {**SPEC, "seed": seed, "lr": LR}

    def train(party: int, base: np.ndarray | None, number: int) -> tuple[np.ndarray, int]:
        model = build_model(spec, xs[party].shape[1])
        if base is not None:
            vector_to_model(model, base)
        tr = banks[party].parts[0]
        epochs = args.local_epochs
        n = train_local(model, xs[party][tr], banks[party].y[tr], epochs=epochs,
                        batch_size=256, lr=LR, seed=seed * 1000 + number)  # fmt: skip
        return model_to_vector(model), n

    final = run_fedavg(train, len(banks), args.rounds)[-1]
    model = build_model(spec, xs[0].shape[1])
    vector_to_model(model, final)
    return mean_test_auprc(model, xs, banks)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--banks", type=int, default=4)
    parser.add_argument("--worlds", default="42")
    parser.add_argument("--model-seeds", default="1,2")
    parser.add_argument("--epochs", type=int, default=4, help="centralised epochs")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--window", type=int, default=28)
    parser.add_argument("--delay", type=int, default=0)
    parser.add_argument("--subset", default="all", choices=sorted(SUBSETS))
    parser.add_argument("--no-noise", action="store_true")
    args = parser.parse_args()
    args.worlds = [int(s) for s in args.worlds.split(",")]
    args.model_seeds = [int(s) for s in args.model_seeds.split(",")]
    return args


def main() -> None:
    args = parse()
    # One thread: on a shared machine more threads spin against each other for nothing.
    torch.set_num_threads(1)
    names = ["centralised without", "centralised with", "federated without", "federated with"]
    rows = []
    for world_seed in args.worlds:
        world = Path(tempfile.mkdtemp(prefix="sketch-fed-"))
        generate_world(world, n_banks=args.banks, preset=args.preset, seed=world_seed)
        banks, sigma = banks_of(world, args)
        plain = [b.base for b in banks]
        extra = [np.hstack([b.base, b.extra[:, SUBSETS[args.subset]]]) for b in banks]
        normed = []
        for xs in (plain, extra):
            norm = pooled_normalizer([(x, b.parts[0]) for x, b in zip(xs, banks, strict=True)])
            normed.append([norm.apply(x) for x in xs])
        for seed in args.model_seeds:
            row = [
                centralised(normed[0], banks, seed, args.epochs),
                centralised(normed[1], banks, seed, args.epochs),
                federated(normed[0], banks, seed, args),
                federated(normed[1], banks, seed, args),
            ]
            rows.append(row)
            figures = ", ".join(f"{n} {v:.3f}" for n, v in zip(names, row, strict=True))
            print(f"world {world_seed} seed {seed} sigma {sigma:.1f}: {figures}", flush=True)
    mean = np.mean(rows, axis=0)
    print(f"mean over {len(rows)} (world, seed) runs, {args.banks} banks each:")
    for name, value in zip(names, mean, strict=True):
        print(f"  {name:<20} {value:.3f}")


if __name__ == "__main__":
    main()

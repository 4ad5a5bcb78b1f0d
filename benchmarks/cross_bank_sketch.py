"""The gain of cross-bank counterparty features: AUPRC with and without them, over seeds.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/cross_bank_sketch.py --preset tiny``
(defaults: 4 banks, worlds 42, 1 and 2, model seeds 1, 2 and 3; ``--no-noise`` gives the
features' ceiling, exact sketches, not a DP setting).

In process, with the node's own code: every bank builds its noised sketches
(``models.counterparty_sketch``, as ``bank_node.sketch_round`` does, at the spec's ε and
δ, ``spec_sigma``) for weekly as-of dates; their sum stands in for the decrypted aggregate
of a sketch round, and each bank subtracts its own. Each bank then trains a local-only
model on its chronological 60/20/20 split on the ordinary features and with the cross-bank
columns appended (each row from the latest sketch dated on or before it), both
standardised as the node does after a statistics round (``Normalizer.from_moments`` of the
pooled training moments of all banks), and reports the test AUPRC. Local-only isolates the
features' gain from federation; the mean is over worlds, banks and model seeds, and the
spread is the standard deviation of the per-(world, seed) means.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bank_node.data import chronological_split, load_transactions  # noqa: E402
from bank_node.sketch_round import spec_dates, spec_shape, spec_sigma  # noqa: E402
from bank_node.splits import DEFAULT_FRACTIONS  # noqa: E402
from bank_node.training import Normalizer  # noqa: E402
from models.counterparty_sketch import (  # noqa: E402
    SKETCH_FEATURE_NAMES,
    add_noise,
    build_sketches,
    features_as_of,
    sketch_key,
)
from models.features import compute_features  # noqa: E402
from models.metrics import auprc  # noqa: E402
from models.nets import build_model  # noqa: E402
from models.training import predict_scores, train_local  # noqa: E402
from protocol import SketchSpec  # noqa: E402
from simulation.world import generate_world  # noqa: E402

SPEC = {"kind": "mlp", "hidden": [32, 16], "seed": 7, "loss": "bce"}
# Column subsets of the cross-bank features a run can compare ("all" is what a policy adds).
SUBSETS = {
    "all": list(range(len(SKETCH_FEATURE_NAMES))),
    "flows": [i for i, n in enumerate(SKETCH_FEATURE_NAMES) if "flows" in n],
    "labelled": [i for i, n in enumerate(SKETCH_FEATURE_NAMES) if "labelled" in n],
}


@dataclass(frozen=True)
class Bank:
    """One bank's rows: labels, split indices, ordinary and cross-bank features."""

    y: np.ndarray
    parts: list[np.ndarray]
    base: np.ndarray
    extra: np.ndarray


def weekly(frames: list[pd.DataFrame]) -> list[str]:
    """As-of dates every 7 days from a week after the first flow (at most 16)."""
    start = min(f["timestamp"].min() for f in frames).normalize() + pd.Timedelta(days=7)
    end = max(f["timestamp"].max() for f in frames)
    return [d.strftime("%Y-%m-%d") for d in pd.date_range(start, end, freq="7D")][:16]


def sketch_spec(frames: list[pd.DataFrame], args: argparse.Namespace) -> SketchSpec:
    return SketchSpec.from_dict({
        "as_of": weekly(frames), "window_days": args.window, "label_delay_days": args.delay,
        "depth": args.depth, "width": args.width, "epsilon": args.epsilon, "delta": 1e-6,
    })  # fmt: skip


def banks_of(world: Path, args: argparse.Namespace) -> tuple[list[Bank], float]:
    """Every bank's features, with the others' (noised) sketches; and the noise's sigma."""
    frames = [load_transactions(world / f"bank_{i + 1}.csv") for i in range(args.banks)]
    spec = sketch_spec(frames, args)
    key = sketch_key(os.urandom(32), "00" * 32)
    dates, shape = spec_dates(spec), spec_shape(spec)
    sigma = 0.0 if args.no_noise else spec_sigma(spec)
    own = [add_noise(build_sketches(f, key, shape, dates), sigma) for f in frames]
    total = np.sum(own, axis=0)
    banks = []
    for i, frame in enumerate(frames):
        split = chronological_split(frame, DEFAULT_FRACTIONS)
        banks.append(
            Bank(
                frame["label"].to_numpy(dtype=np.float32),
                [frame.index.get_indexer(p.index) for p in split],
                compute_features(frame),
                features_as_of(total - own[i], dates, key, shape, frame, noised=sigma > 0),
            )
        )
    return banks, sigma


def pooled_normalizer(matrices: list[tuple[np.ndarray, np.ndarray]]) -> Normalizer:
    """The statistics round's normaliser: moments of every bank's training rows, pooled."""
    rows = np.vstack([x[tr] for x, tr in matrices]).astype(np.float64)
    moments = np.concatenate([rows.mean(axis=0), (rows**2).mean(axis=0)])
    return Normalizer.from_moments(moments, round_number=0, rows=len(rows))


def test_auprc(x: np.ndarray, bank: Bank, epochs: int, seed: int) -> float:
    tr, _, te = bank.parts
    model = build_model({**SPEC, "seed": seed, "lr": 3e-3}, x.shape[1])
    train_local(model, x[tr], bank.y[tr], epochs=epochs, batch_size=256, lr=3e-3, seed=seed)
    return float(auprc(bank.y[te], predict_scores(model, x[te])))


def world_scores(
    banks: list[Bank], columns: dict[str, list[int] | None], args: argparse.Namespace
) -> np.ndarray:
    """AUPRC ``(columns, banks, seeds)``: each column's features standardised, then trained."""
    out = np.zeros((len(columns), len(banks), len(args.model_seeds)))
    for c, subset in enumerate(columns.values()):
        xs = [b.base if subset is None else np.hstack([b.base, b.extra[:, subset]]) for b in banks]
        norm = pooled_normalizer([(x, b.parts[0]) for x, b in zip(xs, banks, strict=True)])
        for i, (x, bank) in enumerate(zip(xs, banks, strict=True)):
            for s, seed in enumerate(args.model_seeds):
                out[c, i, s] = test_auprc(norm.apply(x), bank, args.epochs, seed)
    return out


def signal(banks: list[Bank]) -> str:
    """How often a test row's labelled cross-bank counts are nonzero: positives vs negatives."""
    labelled = SUBSETS["labelled"]
    pos = neg = pos_n = neg_n = 0
    for b in banks:
        te = b.parts[2]
        hit = (b.extra[te][:, labelled] > 0).any(axis=1)
        y = b.y[te] == 1
        pos, pos_n = pos + int(hit[y].sum()), pos_n + int(y.sum())
        neg, neg_n = neg + int(hit[~y].sum()), neg_n + int((~y).sum())
    return (
        f"test rows with a nonzero labelled cross-bank count: positives {pos}/{pos_n} "
        f"({pos / max(pos_n, 1):.1%}), negatives {neg}/{neg_n} ({neg / max(neg_n, 1):.1%})"
    )


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--banks", type=int, default=4)
    parser.add_argument("--worlds", default="42,1,2", help="world seeds, comma-separated")
    parser.add_argument("--model-seeds", default="1,2,3", help="model seeds, comma-separated")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--window", type=int, default=28, help="window_days")
    parser.add_argument("--delay", type=int, default=0, help="label_delay_days")
    parser.add_argument("--subsets", default="all", help=f"of {sorted(SUBSETS)}, comma-separated")
    parser.add_argument(
        "--no-noise", action="store_true", help="exact sketches: the features' ceiling, not DP"
    )
    args = parser.parse_args()
    args.model_seeds = [int(s) for s in args.model_seeds.split(",")]
    args.worlds = [int(s) for s in args.worlds.split(",")]
    unknown = sorted(set(args.subsets.split(",")) - set(SUBSETS))
    if unknown:
        parser.error(f"unknown --subsets {unknown}; choose from {sorted(SUBSETS)}")
    return args


def main() -> None:
    args = parse()
    # One thread: on a shared machine more threads spin against each other for nothing.
    torch.set_num_threads(1)
    columns: dict[str, list[int] | None] = {"without": None}
    columns.update({f"with {name}": SUBSETS[name] for name in args.subsets.split(",")})
    per_world = []
    for seed in args.worlds:
        world = Path(tempfile.mkdtemp(prefix="sketch-world-"))
        generate_world(world, n_banks=args.banks, preset=args.preset, seed=seed)
        banks, sigma = banks_of(world, args)
        scores = world_scores(banks, columns, args)
        per_world.append(scores)
        print(f"world {seed}: sigma {sigma:.1f} per cell and bank; {signal(banks)}")
        for c, name in enumerate(columns):
            print(f"  {name:<15} per bank {np.round(scores[c].mean(axis=1), 3)}", flush=True)
    stacked = np.stack(per_world)  # (worlds, columns, banks, seeds)
    seed_means = stacked.mean(axis=2)  # (worlds, columns, seeds)
    print(f"mean over {len(args.worlds)} worlds x {args.banks} banks x "
          f"{len(args.model_seeds)} model seeds (sd of the per-world-and-seed means):")  # fmt: skip
    for c, name in enumerate(columns):
        values = seed_means[:, c, :].ravel()
        print(f"  {name:<15} {values.mean():.3f} (sd {values.std(ddof=1):.3f})")


if __name__ == "__main__":
    main()

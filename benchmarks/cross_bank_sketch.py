"""The gain of cross-bank counterparty features: AUPRC with and without them, in one run.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/cross_bank_sketch.py`` (defaults: the demo's
world, preset ``demo``, 4 banks, seed 42; ``--preset tiny`` is quicker).

In process, with the node's own code: every bank builds its noised sketches
(``models.counterparty_sketch``, as ``bank_node.sketch_round`` does, at the spec's ε and
δ) for weekly as-of dates; their sum stands in for the decrypted aggregate of a sketch
round, and each bank subtracts its own. Each bank then trains a local-only model on its
chronological 60/20/20 split twice, on the ordinary features and with the six cross-bank
columns appended (each row from the latest sketch dated on or before it), and reports the
test AUPRC of both. Local-only isolates the features' gain from federation.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bank_node.data import chronological_split, load_transactions  # noqa: E402
from bank_node.sketch_round import spec_dates, spec_shape, spec_sigma  # noqa: E402
from bank_node.splits import DEFAULT_FRACTIONS  # noqa: E402
from models.counterparty_sketch import (  # noqa: E402
    add_noise,
    build_sketches,
    features_as_of,
    sketch_key,
)
from models.features import FEATURE_NAMES, compute_features  # noqa: E402
from models.metrics import auprc  # noqa: E402
from models.nets import build_model  # noqa: E402
from models.training import predict_scores, train_local  # noqa: E402
from protocol import SketchSpec  # noqa: E402
from simulation.world import generate_world  # noqa: E402

SPEC = {"kind": "mlp", "hidden": [32, 16], "seed": 7, "loss": "bce"}


def _weekly(frames: list[pd.DataFrame]) -> list[str]:
    start = min(f["timestamp"].min() for f in frames).normalize() + pd.Timedelta(days=7)
    end = max(f["timestamp"].max() for f in frames)
    return [d.strftime("%Y-%m-%d") for d in pd.date_range(start, end, freq="7D")][:16]


def _auprc(x: np.ndarray, y: np.ndarray, parts: list[np.ndarray], epochs: int) -> float:
    tr, _, te = parts
    model = build_model({**SPEC, "lr": 3e-3}, x.shape[1])
    train_local(model, x[tr], y[tr], epochs=epochs, batch_size=256, lr=3e-3, seed=1)
    return float(auprc(y[te], predict_scores(model, x[te])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--banks", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument(
        "--no-noise", action="store_true", help="exact sketches: the features' ceiling, not DP"
    )
    args = parser.parse_args()
    world = Path(tempfile.mkdtemp(prefix="sketch-world-"))
    generate_world(world, n_banks=args.banks, preset=args.preset, seed=args.seed)
    frames = [load_transactions(world / f"bank_{i + 1}.csv") for i in range(args.banks)]
    spec = SketchSpec.from_dict({
        "as_of": _weekly(frames), "window_days": 28, "label_delay_days": 0,
        "depth": 4, "width": 4096, "epsilon": args.epsilon, "delta": 1e-6,
    })  # fmt: skip
    key = sketch_key(os.urandom(32), "00" * 32)
    dates, shape = spec_dates(spec), spec_shape(spec)
    sigma = 0.0 if args.no_noise else spec_sigma(spec)
    own = [add_noise(build_sketches(f, key, shape, dates), sigma) for f in frames]
    total = np.sum(own, axis=0)
    print(f"{len(spec.as_of)} weekly sketches, sigma {sigma:.1f} per cell and bank")
    print("bank  rows     AUPRC without  AUPRC with cross-bank")
    rows = []
    for i, frame in enumerate(frames):
        parts = [
            frame.index.get_indexer(p.index) for p in chronological_split(frame, DEFAULT_FRACTIONS)
        ]
        base = compute_features(frame)
        extra = features_as_of(total - own[i], dates, key, shape, frame)
        y = frame["label"].to_numpy(dtype=np.float32)
        without = _auprc(base, y, parts, args.epochs)
        with_xb = _auprc(np.hstack([base, extra]), y, parts, args.epochs)
        rows.append((without, with_xb))
        print(f"{i + 1:>4}  {len(frame):>7}  {without:>13.3f}  {with_xb:>21.3f}")
    mean = np.mean(rows, axis=0)
    print(
        f"mean           {mean[0]:>13.3f}  {mean[1]:>21.3f}  ({len(FEATURE_NAMES)} vs +6 features)"
    )


if __name__ == "__main__":
    main()

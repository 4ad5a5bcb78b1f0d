"""How far honest banks move the model each round: the figures a policy's clip norm is set from.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/update_norms.py`` (defaults: the demo's
world and hyperparameters, ``python -m simulation.demo``: preset ``demo``, 4 banks, seed 42,
2 local epochs, learning rate 3e-3). ``--rounds 6`` looks further than the demo's 3 rounds.

In process, with the node's own steps: a statistics round's pooled moments normalise every
bank (as ``normalize_features`` does), then each round every bank trains from the round's
base with ``bank_node.training.train_round`` and the base moves to the FedAvg. For each
round it prints every bank's rows and L2 step ``||w_k - base||`` (``models.influence``), the
FedAvg's step, and what a clip norm and a share cap would have done (``--clip``,
``--share``): how many banks clipped, and the capped FedAvg's step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The scripts it shares code with live beside it (a script folder, not a package; a site
# package is named benchmarks).
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import HYPER, Bank, evaluation_of, load_bank  # noqa: E402
from quality_columns import consortium_norm, policy_of  # noqa: E402

from bank_node.training import train_round  # noqa: E402
from models.features import FEATURE_NAMES  # noqa: E402
from models.federation import fedavg  # noqa: E402
from models.influence import capped_rows, clip_update, update_norm  # noqa: E402
from models.nets import initial_vector  # noqa: E402
from simulation.datadir import bank_files  # noqa: E402
from simulation.world import generate_world  # noqa: E402

# The demo's own settings (simulation/demo.py): quality.py's, over 3 rounds.
DEMO_HYPER = {**HYPER, "rounds": 3}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="demo")
    p.add_argument("--banks", type=int, default=4)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rounds", type=int, default=DEMO_HYPER["rounds"])
    p.add_argument("--clip", type=float, default=None, help="a clip norm to try")
    p.add_argument("--share", type=float, default=None, help="a share cap to try")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "update-norms"))
    p.add_argument("--train-before", default=None)
    p.add_argument("--evaluate-from", default=None)
    return p.parse_args(argv)


def load_world(args: argparse.Namespace) -> list[Bank]:
    out = Path(args.out) / f"{args.preset}-{args.banks}-{args.seed}"
    if not (out / "manifest.json").exists():
        generate_world(out, n_banks=args.banks, preset=args.preset, seed=args.seed)
    return [load_bank(f, evaluation_of(args)) for f in bank_files(out)]


def bounded(
    weights: np.ndarray, n: int, base: np.ndarray, total: int, args: argparse.Namespace
) -> tuple[np.ndarray, int, bool]:
    """What an honest node under ``--clip``/``--share`` would send: weights, count, clipped."""
    clipped = False
    if args.clip is not None:
        weights, before = clip_update(weights, base, args.clip)
        clipped = before > args.clip
    if args.share is not None:
        n = capped_rows(n, total, args.share)
    return weights, n, clipped


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(1)  # as the nodes run (torch_threads = 1)
    hyper = {**DEMO_HYPER, "rounds": args.rounds}
    banks = load_world(args)
    policy = policy_of(hyper)
    views = [b.data.normalized(consortium_norm(banks, 1)) for b in banks]
    total = sum(int(v.y_train.size) for v in views)
    base = initial_vector(policy.model_spec, len(FEATURE_NAMES))
    print(f"preset {args.preset}, {len(banks)} banks, seed {args.seed}; {total:,} training rows")
    print(f"clip {args.clip}, share {args.share}; {base.size} weights")
    print(f"{'round':>5}  {'bank':<10} {'rows':>7} {'step':>8}")
    for number in range(2, 2 + args.rounds):  # round 1: the statistics round
        updates, clipped = [], 0
        for bank, view in zip(banks, views, strict=True):
            weights, n = train_round(view, policy, base, seed=number)
            step = update_norm(weights, base)
            print(f"{number:>5}  {bank.slug:<10} {n:>7} {step:>8.4f}")
            weights, n, was_clipped = bounded(weights, n, base, total, args)
            clipped += was_clipped
            updates.append((weights, n))
        new = fedavg(updates)
        print(f"{number:>5}  {'FedAvg':<10} {total:>7} {update_norm(new, base):>8.4f}"
              f"  ({clipped} clipped)")  # fmt: skip
        base = new
    return 0


if __name__ == "__main__":
    sys.exit(main())

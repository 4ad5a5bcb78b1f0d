"""Which cross-bank sketch settings, on the validation split: the federated model with the
six counterparty columns at several noise levels and windows, against the same federation
without them.

Run (the `small` world of seed 0, FedDyn as ``quality.py``'s ``HYPER``, 8 rounds)::

    PYTHONPATH=. .venv/bin/python benchmarks/crossbank_validation.py --preset small \
        --banks 20 --seed 0 --rounds 8 --out var/server-opt

Each variant builds every bank's sketches as ``benchmarks/quality_crossbank.py`` does (the
node's own sketch, noise, others-only sum and as-of features), normalises the wider rows
by their pooled training moments, and federates them with ``server_opt.run_config`` (the
node's ``train_round``, the row-weighted average, the policy's server step). Every figure
is the mean over banks of AUPRC on each bank's **validation** rows; the test period is
never read. A variant's ``t`` is the spec's ``noise_split``: each bank adds ``1/t`` of the
mechanism's variance, the guarantee resting on ``t`` contributors' noise together
(docs/threat-model.md); "exact" sketches carry no noise at all (an upper bound).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts beside this one

from quality import HYPER, evaluation_of  # noqa: E402
from quality_columns import consortium_norm, policy_of  # noqa: E402
from quality_crossbank import cross_bank_banks, sketch_policy  # noqa: E402
from server_opt import Config, Updates, config_policy, run_config  # noqa: E402
from update_norms import load_world  # noqa: E402

from simulation.datadir import bank_files  # noqa: E402

# name -> (window days, noise_split, exact); "none" federates without the columns.
VARIANTS: dict[str, tuple[int, int, bool] | None] = {
    "none": None,
    "exact w28": (28, 1, True),
    "eps1 w28": (28, 1, False),
    "eps1 w28 t19": (28, 19, False),
    "eps1 w28 t10": (28, 10, False),
    "eps1 w7 t19": (7, 19, False),
    "exact w7": (7, 1, True),
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--banks", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--only", default=None, help=f"comma-separated of {', '.join(VARIANTS)}")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "server-opt"))
    p.add_argument("--train-before", default=None)
    p.add_argument("--evaluate-from", default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(1)  # as the nodes run (torch_threads = 1)
    banks = load_world(args)
    files = bank_files(Path(args.out) / f"{args.preset}-{args.banks}-{args.seed}")
    hyper = {**HYPER, "rounds": args.rounds}
    config = Config("quality HYPER", {"server_optimizer": HYPER["server_optimizer"]},
                    fedprox_mu=HYPER["fedprox_mu"])  # fmt: skip
    base = config_policy(policy_of(hyper), config)
    wanted = args.only.split(",") if args.only else list(VARIANTS)
    results: dict[str, list[float]] = {}
    for name in wanted:
        variant = VARIANTS[name]
        if variant is None:
            wide, policy = banks, base
        else:
            window, split, exact = variant
            wide, spec = cross_bank_banks(
                banks, files, evaluation_of(args), 1.0, args.seed,
                window=window, noise_split=split, exact=exact,
            )  # fmt: skip
            policy = sketch_policy(base, spec, hyper)
        norm = consortium_norm(wide, 1)
        views = [b.data.normalized(norm) for b in wide]
        results[name] = run_config(replace(config, name=name), policy, Updates(views), args.rounds)
    print(f"\npreset {args.preset}, {len(banks)} banks, seed {args.seed}, {args.rounds} rounds, "
          f"{HYPER['server_optimizer']}; mean validation AUPRC over banks")  # fmt: skip
    for name, figures in results.items():
        print(f"{name:<16}" + "".join(f"{f:>8.4f}" for f in figures))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"crossbank-{args.preset}-{args.seed}-r{args.rounds}.json").write_text(
        json.dumps({"args": vars(args), "validation_auprc": results}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

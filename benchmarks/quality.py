"""What federation is worth: local-only, centralised, plaintext FedAvg and encrypted FedAvg.

Run: ``.venv/bin/python benchmarks/quality.py [--preset small|tiny] [--seed 0]``.

1. The encrypted column runs the real thing: ``python -m simulation.demo`` as a subprocess
   (live portal, one ``bank-node run`` process per bank, CKKS over HTTP) with the
   hyperparameters in `HYPER`. It leaves each bank's final global weights and the policy
   in its output directory, and its generated world in ``<out>/demo/data``.
2. On that same world this script trains, in process and with the same hyperparameters:
   local-only (each bank alone for rounds x local epochs), centralised (one model on all
   banks' training rows pooled, same epoch budget) and plaintext FedAvg (the node's own
   `bank_node.training.train_round`, averaged by sample counts as ``[n_k w_k, n_k]``).
3. All four columns are scored by one function on each bank's held-out last 20% of time:
   AUPRC, recall at a 0.5% alert budget, F1 at the validation-chosen threshold, and per
   holdout typology the recall at the alert budget at the banks that never saw it while
   training. Targets are printed with pass/fail.

Bring your own data: ``--data-dir DIR`` takes one CSV per bank (IBM AML, PaySim or ULB
creditcard columns, recognised from the header; see DATA.md) instead of a generated world;
no manifest is needed, and without a ``Typology`` column the per-typology figures are
skipped with a note. ``--train-before`` and
``--evaluate-from`` split every bank by date, as a node's ``[evaluation]`` table does (the
encrypted run's nodes get the same table). ``--no-encrypted`` leaves out the CKKS column
(no portal, no node processes): local-only, centralised and plaintext FedAvg only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bank_node.config import Evaluation  # noqa: E402
from bank_node.data import DataError  # noqa: E402
from bank_node.training import (  # noqa: E402
    Normalizer,
    feature_moments,
    model_from_vector,
    train_round,
)
from he.codec import TRAILER_SLOTS  # noqa: E402
from models.comparison import TITLES, BankInfo, comparison_report, score_bank  # noqa: E402
from models.features import FEATURE_NAMES  # noqa: E402
from models.federation import fedavg, run_fedavg  # noqa: E402
from models.nets import FraudMLP, build_model  # noqa: E402
from models.training import predict_scores, train_local  # noqa: E402
from models.vector import vector_length, vector_to_model  # noqa: E402
from protocol import (  # noqa: E402
    DEFAULT_GATE_ALERT_RATE,
    DEFAULT_SECURE_AGGREGATION,
    MIN_BANKS_FLOOR,
    SERVER_OPT_DEFAULTS,
    PolicySnapshot,
    default_ckks_params,
)
from simulation.bank_data import Bank, load_bank  # noqa: E402
from simulation.datadir import (  # noqa: E402
    DataDirError,
    add_data_arguments,
    bank_files,
    check_data_arguments,
    load_manifest,
    typology_manifest,
)
from simulation.world import PRESETS  # noqa: E402

# The one place the hyperparameters live: the in-process columns use them directly and
# the encrypted run gets them through the demo's command-line flags.
HYPER: dict[str, Any] = {
    "rounds": 4,
    "local_epochs": 2,
    "batch_size": 256,
    "learning_rate": 3e-3,
    "fedprox_mu": 0.0,
    "model_spec": {"kind": "mlp", "hidden": [32, 16], "seed": 7, "loss": "bce", "pos_weight": 10.0},
}
COLUMNS = ["local", "central", "fed_plain", "fed_enc"]


def policy_of(hyper: dict[str, Any]) -> PolicySnapshot:
    """The policy snapshot `train_round` reads, as the portal would send it.

    Only the training fields come from ``hyper``; the rest (deadlines, CKKS, DP, secure
    aggregation) do not touch plaintext FedAvg and keep the protocol's defaults.
    """
    keys = ("model_spec", "local_epochs", "batch_size", "learning_rate", "fedprox_mu")
    return PolicySnapshot(
        name="benchmark",
        version=1,
        **{k: hyper[k] for k in keys},
        n_features=len(FEATURE_NAMES),
        vector_length=vector_length(fresh_model(hyper)) + TRAILER_SLOTS,  # + count and tag
        min_banks=MIN_BANKS_FLOOR,
        deadline_seconds=3600,
        max_rounds=hyper["rounds"],
        ckks_params=default_ckks_params(),
        normalize_features=True,
        dp_target_epsilon=None,
        dp_delta=1e-5,
        dp_max_grad_norm=1.0,
        dp_noise_multiplier=None,
        # Plaintext FedAvg never reads these; any valid value will do.
        secure_aggregation=DEFAULT_SECURE_AGGREGATION,
        aggregate_checkers=0,
        max_bank_share=None,
        update_clip_norm=None,
        gate_tolerance=None,
        gate_alert_rate=DEFAULT_GATE_ALERT_RATE,
        **SERVER_OPT_DEFAULTS,
    )


def evaluate(
    model: torch.nn.Module, bank: Bank, norm: Normalizer | None, typologies: list[str]
) -> dict[str, Any]:
    """The one scoring function every column goes through (on its own normalisation)."""
    data = bank.data.normalized(norm)
    val_scores, test_scores = predict_scores(model, data.x_val), predict_scores(model, data.x_test)
    return score_bank(data.y_val, val_scores, data.y_test, test_scores, bank.test_typology,
                      typologies)  # fmt: skip


def fresh_model(hyper: dict[str, Any]) -> FraudMLP:
    spec = {**hyper["model_spec"], "lr": hyper["learning_rate"]}
    return build_model(spec, len(FEATURE_NAMES))


def local_norm(bank: Bank) -> Normalizer:
    """Alone, a bank can only normalise with its own statistics (as ``bank-node baseline``)."""
    return Normalizer.from_moments(feature_moments(bank.data)[0], 0)


def consortium_norm(banks: list[Bank], stats_round: int) -> Normalizer:
    """What a statistics round gives every bank: the count-weighted pooled moments."""
    return Normalizer.from_moments(fedavg([feature_moments(b.data) for b in banks]), stats_round)


def local_only(
    banks: list[Bank], norms: list[Normalizer | None], hyper: dict[str, Any]
) -> list[FraudMLP]:
    """Each bank alone, for as many epochs as the federation ran (as ``bank-node baseline``)."""
    epochs = hyper["rounds"] * hyper["local_epochs"]
    models = []
    for bank, norm in zip(banks, norms, strict=True):
        model = fresh_model(hyper)
        data = bank.data.normalized(norm)
        train_local(
            model, data.x_train, data.y_train, epochs=epochs,
            batch_size=hyper["batch_size"], lr=hyper["learning_rate"], seed=0,
        )  # fmt: skip
        models.append(model)
    return models


def centralised(banks: list[Bank], norm: Normalizer | None, hyper: dict[str, Any]) -> FraudMLP:
    """One model on every bank's training rows pooled (a row two members share counts twice,
    once in each bank's view, as it would if the banks pooled their files)."""
    x = np.concatenate([b.data.normalized(norm).x_train for b in banks])
    y = np.concatenate([b.data.y_train for b in banks])
    model = fresh_model(hyper)
    train_local(
        model, x, y, epochs=hyper["rounds"] * hyper["local_epochs"],
        batch_size=hyper["batch_size"], lr=hyper["learning_rate"], seed=0,
    )  # fmt: skip
    return model


def federated_plaintext(
    banks: list[Bank], norm: Normalizer | None, hyper: dict[str, Any], first_round: int
) -> np.ndarray:
    """In-process FedAvg with the node's own training step; returns the final weights."""
    policy = policy_of(hyper)
    views = [b.data.normalized(norm) for b in banks]

    def train(party: int, base: np.ndarray | None, number: int) -> tuple[np.ndarray, int]:
        return train_round(views[party], policy, base, seed=number)

    return run_fedavg(train, len(banks), hyper["rounds"], first_round=first_round)[-1]


def run_demo(args: argparse.Namespace, hyper: dict[str, Any], out: Path) -> float:
    """The encrypted column: the demo's portal and node processes; returns seconds taken."""
    argv = [*demo_argv(args, hyper, out), *data_argv(args)]
    print("[quality] encrypted run: " + " ".join(argv[1:]), flush=True)
    started = time.monotonic()
    with open(out.parent / "demo.log", "wb") as log:
        subprocess.run(argv, cwd=ROOT, check=True, stdout=log, stderr=subprocess.STDOUT)
    return time.monotonic() - started


def data_argv(args: argparse.Namespace) -> list[str]:
    """The demo's flags for the banks' own files and the date split, when given."""
    flags = {"--data-dir": args.data_dir, "--train-before": args.train_before,
             "--evaluate-from": args.evaluate_from}  # fmt: skip
    return [str(x) for flag, value in flags.items() if value is not None for x in (flag, value)]


def demo_argv(args: argparse.Namespace, hyper: dict[str, Any], out: Path) -> list[str]:
    """``python -m simulation.demo`` with the hyperparameters in ``hyper``.

    Clipping and the share cap are off, as in the plaintext column, so that the two
    columns differ by the encryption alone.
    """
    return [
        sys.executable, "-m", "simulation.demo", "--preset", args.preset,
        "--banks", str(args.banks), "--rounds", str(hyper["rounds"]),
        "--local-epochs", str(hyper["local_epochs"]), "--seed", str(args.seed),
        "--out", str(out), "--skip-baselines", "--batch-size", str(hyper["batch_size"]),
        "--learning-rate", repr(hyper["learning_rate"]),
        "--fedprox-mu", repr(hyper["fedprox_mu"]),
        "--model-spec", json.dumps(hyper["model_spec"]),
        "--deadline", str(args.deadline), "--timeout", str(args.timeout),
        "--max-bank-share", "off", "--update-clip-norm", "off", "--gate-tolerance", "off",
    ]  # fmt: skip


def encrypted_models(
    out: Path, banks: list[Bank], rounds: int
) -> tuple[list[FraudMLP], list[Normalizer | None]]:
    """Each bank's final decrypted global model, and the normalisation that bank decrypted."""
    policy = json.loads((out / "policy.json").read_text())
    models, norms = [], []
    for bank in banks:
        state = out / "banks" / bank.slug / "state"
        meta = json.loads((state / "global_model.json").read_text())
        evaluated = json.loads((state / "state.json").read_text())["evaluated"]
        if len(evaluated) != rounds:
            raise RuntimeError(f"bank {bank.bank_id} evaluated rounds {list(evaluated)}, "
                               f"expected {rounds} training rounds")  # fmt: skip
        model = build_model(policy["model_spec"], policy["n_features"])
        vector_to_model(model, np.load(state / "global_model.npy"))
        models.append(model)
        stats = meta.get("stats_round")
        path = state / f"normalization-round-{stats}.json"
        norms.append(Normalizer.from_json(path.read_text()) if stats is not None else None)
    return models, norms


def stats_round_of(out: Path) -> int | None:
    """The statistics round the demo's training rounds normalised with (None: no such round)."""
    policy = json.loads((out / "policy.json").read_text())
    return 1 if policy.get("normalize_features", False) else None


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--banks", type=int, default=None, help="default: the preset's bank count")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="work directory (default benchmarks/out/quality-P)")
    p.add_argument(
        "--reuse-demo",
        action="store_true",
        help="use the encrypted run already in --out instead of running the demo",
    )
    p.add_argument(
        "--no-encrypted",
        action="store_true",
        help="leave out the CKKS column (no portal, no node processes)",
    )
    p.add_argument("--deadline", type=int, default=3600, help="round deadline (s) for the demo")
    p.add_argument("--timeout", type=int, default=14_400, help="demo timeout (s)")
    for key in ("rounds", "local_epochs", "batch_size"):
        p.add_argument("--" + key.replace("_", "-"), type=int, default=HYPER[key])
    for key in ("learning_rate", "fedprox_mu"):
        p.add_argument("--" + key.replace("_", "-"), type=float, default=HYPER[key])
    p.add_argument("--model-spec", default=json.dumps(HYPER["model_spec"]))
    add_data_arguments(p)
    args = p.parse_args(argv)
    check_data_arguments(p, args)
    args.banks = args.banks or int(PRESETS[args.preset]["banks"])
    return args


def hyper_of(args: argparse.Namespace) -> dict[str, Any]:
    hyper = {k: getattr(args, k) for k in HYPER if k != "model_spec"}
    hyper["model_spec"] = json.loads(args.model_spec)
    return hyper


def evaluation_of(args: argparse.Namespace) -> Evaluation:
    """The nodes' ``[evaluation]`` split as the flags give it (the default: 60/20/20)."""
    start = args.evaluate_from or args.train_before
    return Evaluation(train_before=args.train_before, evaluate_from=start)


def train_columns(
    banks: list[Bank], hyper: dict[str, Any], stats_round: int | None
) -> tuple[dict[str, list[FraudMLP]], dict[str, list[Normalizer | None]], dict[str, float]]:
    """The in-process columns: local-only, centralised, plaintext FedAvg; and their timings."""
    shared = consortium_norm(banks, stats_round) if stats_round is not None else None
    norms: dict[str, list[Normalizer | None]] = {
        "local": [local_norm(b) if stats_round is not None else None for b in banks],
        "central": [shared] * len(banks),
        "fed_plain": [shared] * len(banks),
    }
    models: dict[str, list[FraudMLP]] = {}
    timings: dict[str, float] = {}
    first_round = 1 if stats_round is None else stats_round + 1
    for column, build in (
        ("local", lambda: local_only(banks, norms["local"], hyper)),
        ("central", lambda: [centralised(banks, shared, hyper)] * len(banks)),
        ("fed_plain", lambda: [model_from_vector(hyper["model_spec"], len(FEATURE_NAMES), w)
                               for w in [federated_plaintext(banks, shared, hyper, first_round)]
                               * len(banks)]),
    ):  # fmt: skip
        started = time.monotonic()
        models[column] = build()
        timings[column] = time.monotonic() - started
        print(f"[quality] {TITLES[column]} ready in {timings[column]:.0f}s", flush=True)
    return models, norms, timings


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        return run(args)
    except (DataDirError, DataError) as exc:  # a bank's file or the directory: say which
        print(f"quality: error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    """Every column on the chosen banks' files; the tables printed and written to --out."""
    hyper = hyper_of(args)
    work = Path(args.out or ROOT / "benchmarks" / "out" / f"quality-{args.preset}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    demo = work / "demo"
    torch.set_num_threads(1)  # as the nodes run (torch_threads = 1), so FedAvg runs match
    source = args.data_dir or f"preset {args.preset}, {args.banks} banks, seed {args.seed}"
    print(f"[quality] {source}, {hyper}")
    timings: dict[str, float] = {}
    if not (args.reuse_demo or args.no_encrypted):
        timings["fed_enc"] = run_demo(args, hyper, demo)
    directory = Path(args.data_dir).resolve() if args.data_dir else demo / "data"
    files = bank_files(directory)
    manifest, notes = typology_manifest(files, load_manifest(directory))
    started = time.monotonic()
    evaluation = evaluation_of(args)
    banks = [load_bank(f, evaluation) for f in files]
    timings["load_and_features"] = time.monotonic() - started
    # The demo's policy decides; without a demo, the benchmark's own policy (normalised).
    stats_round = 1 if args.no_encrypted else stats_round_of(demo)
    models, norms, trained = train_columns(banks, hyper, stats_round)
    timings.update(trained)
    columns = [c for c in COLUMNS if not (args.no_encrypted and c == "fed_enc")]
    if "fed_enc" in columns:
        models["fed_enc"], norms["fed_enc"] = encrypted_models(demo, banks, hyper["rounds"])
    typologies = list(manifest["typologies"])
    results = {
        c: {b.bank_id: evaluate(m, b, n, typologies)
            for b, m, n in zip(banks, models[c], norms[c], strict=True)}
        for c in columns
    }  # fmt: skip
    lines, summary = report(results, banks, manifest, notes, source, hyper, evaluation)
    lines += ["", "seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())]
    print("\n".join(lines))
    (work / "quality.json").write_text(json.dumps(
        {"args": vars(args), "hyper": hyper, "results": results, "summary": summary,
         "timings": timings, "notes": notes}, indent=2, default=str))  # fmt: skip
    (work / "quality.txt").write_text("\n".join(lines) + "\n")
    return 0


def report(
    results: dict[str, Any],
    banks: list[Bank],
    manifest: dict[str, Any],
    notes: list[str],
    source: str,
    hyper: dict[str, Any],
    evaluation: Evaluation,
) -> tuple[list[str], dict[str, Any]]:
    """The comparison tables, headed by what was run on what, with the notes at the end."""
    info = [BankInfo(b.bank_id, len(b.data.y_test), int(b.data.y_test.sum())) for b in banks]
    lines, summary = comparison_report(results, info, manifest)
    rows = sum(b.rows for b in banks)
    lines.insert(0, f"{source}; {rows:,} transactions; split: {evaluation.describe()}; "
                 f"hyperparameters {json.dumps(hyper)}")  # fmt: skip
    lines += [f"note: {n}" for n in notes]
    return lines, summary


if __name__ == "__main__":
    sys.exit(main())

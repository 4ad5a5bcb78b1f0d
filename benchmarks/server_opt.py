"""Which server optimiser: FedAvg, FedAvgM, FedAdam, FedYogi, FedProx μ, on the validation split.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/server_opt.py`` (defaults: the demo's world
and hyperparameters, as ``benchmarks/update_norms.py``: preset ``demo``, 4 banks, seed 42,
3 training rounds, 2 local epochs, learning rate 3e-3). ``--rounds 6`` looks further.

In process, with the node's own steps: a statistics round's pooled moments normalise every
bank, then each round every bank trains from the round's base with
``bank_node.training.train_round`` (seeded with the round number, as a node), the updates
are averaged by rows (``models.federation.fedavg``, the decrypted aggregate's plaintext
twin), and ``models.server_opt.step`` turns the average into the next base, exactly as
``bank_node.server_chain`` does at every node. Every configuration is scored after every
round by the mean over banks of AUPRC on each bank's **validation** rows (the 20% of time
before the test period): the figure defaults are chosen on. The test period is never read.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# The scripts it shares code with live beside it (a script folder, not a package; a site
# package is named benchmarks).
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import HYPER, Bank  # noqa: E402
from quality_columns import centralised, consortium_norm, local_norm, local_only, policy_of  # noqa: E402
from update_norms import load_world  # noqa: E402

from bank_node.feddyn import next_own  # noqa: E402
from bank_node.server_chain import server_params  # noqa: E402
from bank_node.training import (  # noqa: E402
    LocalData,
    Normalizer,
    model_from_vector,
    round_start,
    train_round,
)
from models.federation import fedavg  # noqa: E402
from models.metrics import auprc  # noqa: E402
from models.nets import initial_vector  # noqa: E402
from models.scaffold import full_gradient, weighted_mean  # noqa: E402
from models.server_opt import FEDDYN, ServerOptState, model_digest, step  # noqa: E402
from models.training import predict_scores, train_local  # noqa: E402
from models.vector import model_to_vector  # noqa: E402
from protocol import SERVER_OPT_DEFAULTS, PolicySnapshot  # noqa: E402


@dataclass(frozen=True)
class Config:
    """One column: a name, the policy's server-optimiser fields, and FedProx's μ."""

    name: str
    server: dict[str, Any]
    fedprox_mu: float = 0.0
    training: tuple[tuple[str, Any], ...] = ()  # local_epochs, learning_rate, batch_size
    scaffold: bool = False  # SCAFFOLD's control variates (models/scaffold.py), option I
    sgd_momentum: float | None = None  # local SGD with this momentum instead of Adam
    lr_decay: float = 1.0  # the local learning rate times this, each training round after the first
    tail: int = 1  # score the mean of the last `tail` global models (training goes on unchanged)
    per_bank: bool = False  # every bank weighs the same in the average, not by its rows
    by_positives: bool = False  # each bank weighs by its labelled positives, not by its rows
    steps: int | None = None  # every bank takes exactly this many local steps a round
    nova: bool = False  # FedNova: each update rescaled to the row-weighted mean step count


# Hyperparameters from Reddi et al. (2021)'s grids, around the scale of the demo's steps
# (each weight moves about 0.1 a round: docs/robustness.md's step norms over 1,985 weights).
CONFIGS: tuple[Config, ...] = (
    Config("fedavg", {}),
    Config("fedavgm lr=1 m=0.5", {"server_optimizer": "fedavgm", "server_momentum": 0.5}),
    Config("fedavgm lr=1 m=0.9", {"server_optimizer": "fedavgm", "server_momentum": 0.9}),
    Config("fedadam lr=0.03", {"server_optimizer": "fedadam", "server_lr": 0.03}),
    Config("fedadam lr=0.1", {"server_optimizer": "fedadam", "server_lr": 0.1}),
    Config("fedyogi lr=0.03", {"server_optimizer": "fedyogi", "server_lr": 0.03}),
    Config("fedprox mu=0.01", {}, fedprox_mu=0.01),
    Config("fedprox mu=0.1", {}, fedprox_mu=0.1),
    Config("fedprox mu=0.03", {}, fedprox_mu=0.03),
    Config("fedprox mu=0.003", {}, fedprox_mu=0.003),
    # The local step itself (how far each bank drifts from the round's base): `--only` them.
    Config("fedavg e1", {}, training=(("local_epochs", 1),)),
    Config("fedavg e4 lr=1e-3", {}, training=(("local_epochs", 4), ("learning_rate", 1e-3))),
    Config("fedavg lr=1e-3", {}, training=(("learning_rate", 1e-3),)),
    Config("fedavg b1024 lr=1e-2", {}, training=(("batch_size", 1024), ("learning_rate", 1e-2))),
    Config(
        "fedavgm m=0.5 lr=1e-3",
        {"server_optimizer": "fedavgm", "server_momentum": 0.5},
        training=(("learning_rate", 1e-3),),
    ),
    Config("fedprox mu=0.01 decay=0.8", {}, fedprox_mu=0.01, lr_decay=0.8),
    Config("fedprox mu=0.01 decay=0.65", {}, fedprox_mu=0.01, lr_decay=0.65),
    Config("fedprox mu=0.03 decay=0.8", {}, fedprox_mu=0.03, lr_decay=0.8),
    Config("scaffold", {}, scaffold=True),
    Config("scaffold fedprox mu=0.01", {}, fedprox_mu=0.01, scaffold=True),
    Config("scaffold lr=1e-3", {}, scaffold=True, training=(("learning_rate", 1e-3),)),
    # SCAFFOLD is an SGD method: under Adam its constant correction is normalised into a
    # full-size step on every coordinate, every step. The same local SGD with and without it.
    Config("sgd lr=0.02 m=0.9", {}, sgd_momentum=0.9, training=(("learning_rate", 0.02),)),
    Config(
        "scaffold sgd lr=0.02 m=0.9",
        {},
        scaffold=True,
        sgd_momentum=0.9,
        training=(("learning_rate", 0.02),),
    ),
    # Two levers that cost no extra encrypted sum: scoring the mean of the last few global
    # models (tail averaging, Polyak & Juditsky 1992; SWA, Izmailov et al. 2018), which every
    # node can compute from the chain it already holds; and each bank weighing the same.
    Config("fedprox mu=0.01 tail=2", {}, fedprox_mu=0.01, tail=2),
    Config("fedprox mu=0.01 tail=3", {}, fedprox_mu=0.01, tail=3),
    Config("fedprox mu=0.01 tail=4", {}, fedprox_mu=0.01, tail=4),
    Config("fedprox mu=0.01 per-bank", {}, fedprox_mu=0.01, per_bank=True),
    # A typology only a few banks train on (structuring, at one bank of `small`) enters the
    # average at that bank's share of rows; weighing by positives gives fraud-rich banks the
    # say. And a server step past the average (FedAvgM with no momentum, lr > 1).
    Config("fedprox mu=0.01 by-positives", {}, fedprox_mu=0.01, by_positives=True),
    *(
        Config(
            f"fedprox mu=0.01 server-lr={lr}",
            {"server_optimizer": "fedavgm", "server_momentum": 0.0, "server_lr": lr},
            fedprox_mu=0.01,
        )
        for lr in (1.5, 2.5)
    ),
    # Objective inconsistency (Wang et al., "Tackling the Objective Inconsistency Problem in
    # Heterogeneous Federated Optimization", NeurIPS 2020): with E local epochs a bank of n
    # rows takes E n / B steps, so FedAvg drifts to the optimum of sum n_i^2 F_i, not the
    # centralised sum n_i F_i. Equal step counts, or FedNova's normalised updates, remove it.
    Config("fedprox mu=0.01 steps=300", {}, fedprox_mu=0.01, steps=300),
    Config("fedprox mu=0.01 steps=600", {}, fedprox_mu=0.01, steps=600),
    Config("fedprox mu=0.01 fednova", {}, fedprox_mu=0.01, nova=True),
    # FedDyn: each bank's local loss gains a linear term from its own past updates, and the
    # server state h (computable from the published averages at every node) corrects the
    # average, so the fixed point is the centralised objective's; no second encrypted sum.
    Config("feddyn a=0.01", {"server_optimizer": "feddyn"}, fedprox_mu=0.01),
    Config("feddyn a=0.03", {"server_optimizer": "feddyn"}, fedprox_mu=0.03),
    Config("feddyn a=0.003", {"server_optimizer": "feddyn"}, fedprox_mu=0.003),
    Config("feddyn a=0.01 tail=3", {"server_optimizer": "feddyn"}, fedprox_mu=0.01, tail=3),
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="demo")
    p.add_argument("--banks", type=int, default=4)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", default=None, help="comma-separated config names to run")
    p.add_argument(
        "--references", action="store_true",
        help="also the centralised and local-only models' validation AUPRC (rounds x local epochs)",
    )  # fmt: skip
    p.add_argument(
        "--hidden", default=None,
        help="the MLP's hidden widths for every column and reference, e.g. 128,64",
    )  # fmt: skip
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "server-opt"))
    p.add_argument("--train-before", default=None)
    p.add_argument("--evaluate-from", default=None)
    return p.parse_args(argv)


def config_policy(base: PolicySnapshot, config: Config) -> PolicySnapshot:
    """The demo's policy with this column's server optimiser and μ (validated as on the wire)."""
    fields = {
        **SERVER_OPT_DEFAULTS, **config.server, **dict(config.training),
        "fedprox_mu": config.fedprox_mu,
    }  # fmt: skip
    return PolicySnapshot.from_dict(replace(base, **fields).to_dict())


def mean_validation_auprc(models: list[torch.nn.Module], views: list[LocalData]) -> float:
    """Mean over banks of AUPRC of each bank's model on its validation rows (never the test)."""
    pairs = zip(models, views, strict=True)
    return float(np.nanmean([auprc(v.y_val, predict_scores(m, v.x_val)) for m, v in pairs]))


def validation_auprc(weights: np.ndarray, views: list[LocalData], spec: dict[str, Any]) -> float:
    """The mean validation AUPRC of one shared model, every bank scoring it."""
    model = model_from_vector(spec, views[0].x_val.shape[1], weights)  # cross-bank: wider
    return mean_validation_auprc([model] * len(views), views)


def references(
    banks: list[Bank], views: list[LocalData], norm: Normalizer, hyper: dict[str, Any]
) -> dict[str, float]:
    """The centralised model (consortium normalisation) and each bank alone (its own), on the
    validation rows, trained for as many epochs as the federation runs (as `quality.py`)."""
    central = centralised(banks, norm, hyper)
    own_norms = [local_norm(b) for b in banks]
    alone = local_only(banks, list(own_norms), hyper)
    own_views = [b.data.normalized(n) for b, n in zip(banks, own_norms, strict=True)]
    figures = {
        "local-only": mean_validation_auprc(list(alone), own_views),
        "centralised": mean_validation_auprc([central] * len(views), views),
    }
    for name, value in figures.items():
        print(f"[server_opt] {name}: {value:.4f}", flush=True)
    return figures


class Updates:
    """Every bank's trained update from a base, computed once per (base, μ, round)."""

    def __init__(self, views: list[LocalData]) -> None:
        self.views = views
        self.cache: dict[tuple[Any, ...], list[tuple[np.ndarray, int]]] = {}

    def __call__(
        self, policy: PolicySnapshot, base: np.ndarray, number: int, steps: int | None = None
    ) -> list[tuple[np.ndarray, int]]:
        local = (policy.fedprox_mu, policy.local_epochs, policy.learning_rate, policy.batch_size)
        key = (model_digest(base), *local, number, steps)
        if key not in self.cache:  # the first round starts every column of one local step alike
            self.cache[key] = [self._train(v, policy, base, number, steps) for v in self.views]
        return self.cache[key]

    @staticmethod
    def _train(
        view: LocalData, policy: PolicySnapshot, base: np.ndarray, number: int, steps: int | None
    ) -> tuple[np.ndarray, int]:
        if steps is None:
            return train_round(view, policy, base, seed=number)
        model = round_start(policy, base)
        n = train_local(
            model, view.x_train, view.y_train, seed=number, epochs=policy.local_epochs,
            batch_size=policy.batch_size, lr=policy.learning_rate, max_steps=steps,
        )  # fmt: skip
        return model_to_vector(model), n


def _sgd(model: torch.nn.Module, policy: PolicySnapshot, momentum: float) -> Any:
    def configure() -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=policy.learning_rate, momentum=momentum)

    return configure


class ScaffoldUpdates:
    """SCAFFOLD's local step at every bank: each trains with ``c - c_i`` from the previous
    round (none in the first), then its control variate at this round's base joins the sum."""

    def __init__(self, views: list[LocalData], config: Config) -> None:
        self.views, self.config = views, config
        self.own: list[np.ndarray] | None = None  # each bank's c_i, at the previous base
        self.consortium: np.ndarray | None = None  # c, their row-weighted mean

    def __call__(
        self, policy: PolicySnapshot, base: np.ndarray, number: int
    ) -> list[tuple[np.ndarray, int]]:
        out, variates = [], []
        for i, view in enumerate(self.views):
            model = round_start(policy, base)
            variates.append((full_gradient(model, view.x_train, view.y_train), view.y_train.size))
            if self.config.scaffold and self.own is not None and self.consortium is not None:
                model.set_control_correction(self.consortium - self.own[i])
            if self.config.sgd_momentum is not None:
                model.configure_optimizers = _sgd(model, policy, self.config.sgd_momentum)  # type: ignore[method-assign]
            n = train_local(
                model, view.x_train, view.y_train, seed=number, epochs=policy.local_epochs,
                batch_size=policy.batch_size, lr=policy.learning_rate,
            )  # fmt: skip
            out.append((model_to_vector(model), n))
        self.own = [v for v, _ in variates]
        self.consortium = weighted_mean(variates)
        return out


class DynUpdates:
    """FedDyn's local step: bank k minimises ``L_k(w) - <h_k, w> + a/2 ||w - base||^2`` and
    then updates its own state ``h_k -= a (w_k - base)`` (a = the policy's FedProx mu)."""

    def __init__(self, views: list[LocalData]) -> None:
        self.views = views
        self.own: list[np.ndarray] = []  # each bank's h_k, zero before its first round

    def __call__(
        self, policy: PolicySnapshot, base: np.ndarray, number: int
    ) -> list[tuple[np.ndarray, int]]:
        out = []
        self.own = self.own or [np.zeros_like(base) for _ in self.views]
        for i, view in enumerate(self.views):  # the node's own step (bank_node.agent_update)
            weights, n = train_round(view, policy, base, number, -self.own[i])
            self.own[i] = next_own(self.own[i], weights, base, policy.fedprox_mu)
            out.append((weights, n))
        return out


def normalised(
    trained: list[tuple[np.ndarray, int]], base: np.ndarray, policy: PolicySnapshot
) -> list[tuple[np.ndarray, int]]:
    """FedNova's updates: each bank's step ``w_i - base`` divided by its local step count
    ``tau_i`` and multiplied by their row-weighted mean ``tau_eff``, so that every bank's
    update counts as much per row whatever its size (weights stay by rows)."""
    taus = [policy.local_epochs * -(-n // policy.batch_size) for _, n in trained]
    tau_eff = sum(n * t for (_, n), t in zip(trained, taus, strict=True)) / sum(
        n for _, n in trained
    )
    return [(base + (w - base) * (tau_eff / t), n) for (w, n), t in zip(trained, taus, strict=True)]


def weighed(
    config: Config, trained: list[tuple[np.ndarray, int]], views: list[LocalData]
) -> list[tuple[np.ndarray, int]]:
    """The ``(weights, count)`` pairs the average takes, under the column's weighting."""
    if config.per_bank:
        return [(w, 1) for w, _ in trained]
    if config.by_positives:
        return [(w, max(1, int(v.y_train.sum()))) for (w, _), v in zip(trained, views, strict=True)]
    return trained


def run_config(
    config: Config, policy: PolicySnapshot, updates: Updates, rounds: int
) -> list[float]:
    """Validation AUPRC after each round of one column."""
    params = server_params(policy)
    model = initial_vector(policy.model_spec, policy.n_features)
    state: ServerOptState | None = None
    figures: list[float] = []
    chain: list[np.ndarray] = []
    own_step = config.scaffold or config.sgd_momentum is not None
    local: Any = ScaffoldUpdates(updates.views, config) if own_step else updates
    if policy.server_optimizer == FEDDYN:  # each bank's half; the server's is `step`
        local = DynUpdates(updates.views)
    for number in range(2, 2 + rounds):  # round 1: the statistics round
        lr = policy.learning_rate * config.lr_decay ** (number - 2)
        step_policy = replace(policy, learning_rate=lr)
        if config.steps is not None:
            trained = updates(step_policy, model, number, config.steps)
        else:
            trained = local(step_policy, model, number)
        if config.nova:
            trained = normalised(trained, model, policy)
        average = fedavg(weighed(config, trained, updates.views))
        model, state = step(state, model, average, params)
        chain = [*chain, model][-config.tail :]
        scored = np.mean(chain, axis=0)
        figures.append(validation_auprc(scored, updates.views, policy.model_spec))
        print(f"[server_opt] {config.name}: round {number} {figures[-1]:.4f}", flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(1)  # as the nodes run (torch_threads = 1)
    banks: list[Bank] = load_world(args)
    norm = consortium_norm(banks, 1)
    views = [b.data.normalized(norm) for b in banks]
    hyper = {**HYPER, "rounds": args.rounds}
    if args.hidden:
        hidden = [int(h) for h in args.hidden.split(",")]
        hyper["model_spec"] = {**HYPER["model_spec"], "hidden": hidden}
    base = policy_of(hyper)
    wanted = set(args.only.split(",")) if args.only else None
    updates, results = Updates(views), {}
    refs = references(banks, views, norm, hyper) if args.references else {}
    for config in CONFIGS:
        if wanted is None or config.name in wanted:
            results[config.name] = run_config(
                config, config_policy(base, config), updates, args.rounds
            )
    rows = sum(int(v.y_val.size) for v in views)
    print(f"\npreset {args.preset}, {len(banks)} banks, seed {args.seed}, {args.rounds} rounds, "
          f"hidden {hyper['model_spec']['hidden']}; "
          f"mean validation AUPRC over banks ({rows:,} validation rows)")  # fmt: skip
    print(
        f"{'configuration':<22}" + "".join(f"{'r' + str(n):>8}" for n in range(2, 2 + args.rounds))
    )
    for name, figures in results.items():
        print(f"{name:<22}" + "".join(f"{f:>8.4f}" for f in figures))
    for name, value in refs.items():
        print(f"{name:<22}{value:>8.4f} (trained {args.rounds} x {HYPER['local_epochs']} epochs)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.preset}-{args.seed}-r{args.rounds}.json").write_text(
        json.dumps({"args": vars(args), "validation_auprc": results, "references": refs}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

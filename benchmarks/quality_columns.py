"""The quality benchmark's columns: how each way of training builds one model per bank.

`benchmarks/quality.py` runs them and prints the tables; every column here is scored by
`evaluate` on its own normalisation. The in-process columns use the node's own training
step, so they differ from the encrypted run by the encryption alone.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bank_node.baseline import default_policy  # noqa: E402
from bank_node.feddyn import next_own  # noqa: E402
from bank_node.server_chain import server_params  # noqa: E402
from bank_node.training import (  # noqa: E402
    LocalData,
    Normalizer,
    feature_moments,
    model_from_vector,
    train_round,
)
from he.codec import TRAILER_SLOTS  # noqa: E402
from models.comparison import TITLES, score_bank  # noqa: E402
from models.features import FEATURE_NAMES  # noqa: E402
from models.federation import fedavg  # noqa: E402
from models.nets import FraudMLP, build_model, initial_vector  # noqa: E402
from models.personalise import personalise  # noqa: E402
from models.server_opt import FEDDYN, ServerOptState, step  # noqa: E402
from models.training import predict_scores, train_local  # noqa: E402
from models.vector import model_to_vector, vector_length, vector_to_model  # noqa: E402
from protocol import (  # noqa: E402
    PolicySnapshot,
)
from simulation.bank_data import Bank  # noqa: E402


def policy_of(hyper: dict[str, Any]) -> PolicySnapshot:
    """The policy snapshot `train_round` reads, as the portal would send it.

    Only the training fields come from ``hyper``; the rest (deadlines, CKKS, DP, secure
    aggregation) do not touch plaintext FedAvg and keep the protocol's defaults.
    """
    keys = ("model_spec", "local_epochs", "batch_size", "learning_rate", "fedprox_mu")
    return dataclasses.replace(
        default_policy(),
        name="benchmark",
        version=1,
        **{k: hyper[k] for k in keys},
        server_optimizer=hyper.get("server_optimizer", "fedavg"),
        vector_length=vector_length(fresh_model(hyper)) + TRAILER_SLOTS,  # + count and tag
        deadline_seconds=3600,
        max_rounds=hyper["rounds"],
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
    """In-process federation with the node's own training step; returns the final weights."""
    views = [b.data.normalized(norm) for b in banks]
    return federate(views, policy_of(hyper), hyper["rounds"], first_round)


def federate(
    views: list[LocalData], policy: PolicySnapshot, rounds: int, first_round: int
) -> np.ndarray:
    """The rounds as the nodes run them, the CKKS sum aside: every bank trains from the base
    with `train_round` (under FedDyn with its own ``-h_k``, then ``h_k -= alpha (w_k - base)``,
    as `bank_node.feddyn`), the updates are averaged by rows (`fedavg`), and the policy's
    server optimiser (`models.server_opt.step`, as `bank_node.server_chain`) makes the next
    base. Returns the last round's model."""
    params = server_params(policy)
    base = initial_vector(policy.model_spec, policy.n_features)
    state: ServerOptState | None = None
    own = [np.zeros_like(base) for _ in views] if params.optimizer == FEDDYN else None
    for number in range(first_round, first_round + rounds):
        trained = []
        for i, view in enumerate(views):
            correction = -own[i] if own is not None else None
            weights, n = train_round(view, policy, base, number, correction)
            if own is not None:
                own[i] = next_own(own[i], weights, base, policy.fedprox_mu)
            trained.append((weights, n))
        base, state = step(state, base, fedavg(trained), params)
    return base


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


def column_norms(banks: list[Bank], stats_round: int | None) -> dict[str, list[Normalizer | None]]:
    """Each in-process column's normalisation per bank (None: the policy normalises nothing)."""
    shared = consortium_norm(banks, stats_round) if stats_round is not None else None
    return {
        "local": [local_norm(b) if stats_round is not None else None for b in banks],
        "central": [shared] * len(banks),
        "fed_plain": [shared] * len(banks),
    }


def train_columns(
    banks: list[Bank],
    hyper: dict[str, Any],
    norms: dict[str, list[Normalizer | None]],
    stats_round: int | None,
) -> tuple[dict[str, list[FraudMLP]], dict[str, float]]:
    """The in-process columns: local-only, centralised, plaintext FedAvg; and their timings."""
    shared = norms["central"][0]
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
    return models, timings


def columns_key(
    hyper: dict[str, Any], stats_round: int | None, files: list[Path], split: str
) -> dict[str, Any]:
    """What the in-process columns depend on: settings, split and the banks' files as stored."""
    stat = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    key = {"hyper": hyper, "stats_round": stats_round, "split": split, "files": stat}
    return dict(json.loads(json.dumps(key, sort_keys=True)))  # as it reads back from disk


def save_columns(work: Path, key: dict[str, Any], models: dict[str, list[FraudMLP]]) -> None:
    """Keep the in-process columns' weights beside the run, for ``--reuse-demo``."""
    arrays = {f"{c}-{i}": model_to_vector(m) for c, ms in models.items() for i, m in enumerate(ms)}
    np.savez(work / "columns.npz", **arrays)  # type: ignore[arg-type]
    (work / "columns.json").write_text(json.dumps(key, sort_keys=True, indent=1))


def saved_columns(
    work: Path, key: dict[str, Any], hyper: dict[str, Any], n_banks: int
) -> dict[str, list[FraudMLP]] | None:
    """The in-process columns a run with the same ``key`` saved, or None.

    Training is deterministic (seeded, one thread), so reloading gives the models a rerun
    would train; a changed training step needs the saved files deleted.
    """
    meta, arrays = work / "columns.json", work / "columns.npz"
    if not (meta.exists() and arrays.exists()) or json.loads(meta.read_text()) != key:
        return None
    spec, width = hyper["model_spec"], len(FEATURE_NAMES)
    with np.load(arrays) as saved:
        return {c: [model_from_vector(spec, width, saved[f"{c}-{i}"]) for i in range(n_banks)]
                for c in ("local", "central", "fed_plain")}  # fmt: skip


def personalised(
    banks: list[Bank],
    base: list[FraudMLP],
    norms: list[Normalizer | None],
    hyper: dict[str, Any],
) -> tuple[list[FraudMLP], dict[str, str]]:
    """Each bank fine-tunes the final federated model on its own training rows.

    `models.personalise.personalise` tries its candidates (the model unchanged, the last
    layer, every layer at a lower learning rate) and keeps the best on the bank's
    *validation* rows; the test period is only scored afterwards, like every column.
    Returns the models and each bank's choice.
    """
    models, choices = [], {}
    for bank, model, norm in zip(banks, base, norms, strict=True):
        data = bank.data.normalized(norm)
        out = personalise(
            model, (data.x_train, data.y_train), (data.x_val, data.y_val),
            batch_size=hyper["batch_size"], seed=0,
        )  # fmt: skip
        models.append(out.model)
        choices[bank.bank_id] = out.choice.name
    return models, choices

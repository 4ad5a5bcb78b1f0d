"""The quality benchmark's "federated + cross-bank features" column (issue 15, items 2 and 4).

In process, with the node's own code for each step a sketch policy adds:

1. every bank builds its counterparty sketches (``models.counterparty_sketch``) for weekly
   as-of dates, noised at the spec's ε and δ (``bank_node.sketch_round.bank_sigma``), as
   ``bank_node.sketch_round`` does in a sketch round;
2. their sum stands in for the decrypted aggregate of that round (the CKKS sum of the same
   numbers; its error is far below the noise), and each bank subtracts its own
   (``others_sketch``);
3. each bank appends the six cross-bank columns to its rows, each row from the latest
   sketch dated on or before it (``features_as_of``, so no label of a row's own period is
   read), with ``bank_node.sketch_round.with_cross_bank`` on the benchmark's own split;
4. a statistics round's pooled moments normalise the wider rows, and the plaintext
   federation (``quality_columns.federate``: the node's ``train_round``, the row-weighted
   average, the policy's server optimiser) trains under the same hyperparameters as the
   other federated columns, the policy widened by the six columns.

The sketches' hash key and noise are seeded from ``seed`` so that a rerun gives the same
column; a node draws both from secrets (the integrity key's HKDF, the OS's generator).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # the scripts beside this one

from cross_bank_sketch import weekly  # noqa: E402  (the scripts beside this one)
from quality_columns import consortium_norm, federate, policy_of  # noqa: E402

from bank_node.config import Evaluation  # noqa: E402
from bank_node.data import load_transactions  # noqa: E402
from bank_node.sketch_round import (  # noqa: E402
    bank_sigma,
    spec_dates,
    spec_shape,
    with_cross_bank,
)
from bank_node.splits import split_frame  # noqa: E402
from bank_node.training import Normalizer  # noqa: E402
from he.codec import TRAILER_SLOTS  # noqa: E402
from models.counterparty_sketch import (  # noqa: E402
    SKETCH_FEATURE_NAMES,
    add_noise,
    build_sketches,
    features_as_of,
    others_sketch,
    sketch_key,
)
from models.features import FEATURE_NAMES  # noqa: E402
from models.nets import FraudMLP, build_model  # noqa: E402
from models.vector import model_to_vector, vector_length, vector_to_model  # noqa: E402
from protocol import PolicySnapshot, SketchSpec  # noqa: E402
from simulation.bank_data import Bank  # noqa: E402
from simulation.datadir import BankFile  # noqa: E402

WIDTH = len(FEATURE_NAMES) + len(SKETCH_FEATURE_NAMES)


def sketch_spec(
    frames: list[pd.DataFrame], epsilon: float, window: int = 28, noise_split: int = 1
) -> SketchSpec:
    """The spec a consortium's policy would carry: 28-day windows, labels known at once."""
    return SketchSpec.from_dict({
        "as_of": weekly(frames), "window_days": window, "label_delay_days": 0,
        "depth": 4, "width": 4096, "epsilon": epsilon, "delta": 1e-6,
        "noise_split": noise_split,
    })  # fmt: skip


def bench_key(seed: int) -> bytes:
    """The sketches' hash key: seeded here; a node derives it from its integrity key."""
    return sketch_key(hashlib.sha256(f"quality-sketch-{seed}".encode()).digest(), "00" * 32)


def others_sketches(
    frames: list[pd.DataFrame], spec: SketchSpec, seed: int, *, exact: bool = False
) -> list[np.ndarray]:
    """What each bank decrypts and keeps after a sketch round: the others' noised sum, each
    bank's noise its share of the spec's (``bank_sigma``); ``exact``: no noise at all."""
    key, dates, shape = bench_key(seed), spec_dates(spec), spec_shape(spec)
    rng = np.random.default_rng(seed)
    sigma = 0.0 if exact else bank_sigma(spec)
    own = [add_noise(build_sketches(f, key, shape, dates), sigma, rng) for f in frames]
    total = np.sum(own, axis=0)  # what the sketch round's decrypted aggregate holds
    return [others_sketch(total, mine) for mine in own]


def cross_bank_banks(
    banks: list[Bank],
    files: list[BankFile],
    evaluation: Evaluation,
    epsilon: float,
    seed: int,
    *,
    window: int = 28,
    noise_split: int = 1,
    exact: bool = False,
) -> tuple[list[Bank], SketchSpec]:
    """Every bank with the six cross-bank columns appended to its splits, and the spec.

    ``exact``: sketches without noise, read as count-min (an upper bound, not a policy).
    """
    frames = [load_transactions(f.path) for f in files]
    spec = sketch_spec(frames, epsilon, window, noise_split)
    key, dates, shape = bench_key(seed), spec_dates(spec), spec_shape(spec)
    sums = others_sketches(frames, spec, seed, exact=exact)
    out = []
    for bank, file, frame, others in zip(banks, files, frames, sums, strict=True):
        parts = [
            frame.index.get_indexer(p.index) for p in split_frame(frame, evaluation, file.path)
        ]
        extra = features_as_of(others, dates, key, shape, frame, noised=not exact)
        out.append(dataclasses.replace(bank, data=with_cross_bank(bank.data, parts, extra)))
    return out, spec


def sketch_policy(
    policy: PolicySnapshot, spec: SketchSpec, hyper: dict[str, Any]
) -> PolicySnapshot:
    """``policy`` with the sketch spec and the model widened by its six columns."""
    model = build_model({**hyper["model_spec"], "lr": hyper["learning_rate"]}, WIDTH)
    return dataclasses.replace(
        policy,
        counterparty_sketch=spec,
        min_banks=max(policy.min_banks, spec.noise_split + 1),  # the protocol's bound
        n_features=WIDTH,
        vector_length=vector_length(model) + TRAILER_SLOTS,
    )


def federated_cross_bank(
    banks: list[Bank], norm: Normalizer, policy: PolicySnapshot, rounds: int, first_round: int
) -> FraudMLP:
    """The plaintext federation (`quality_columns.federate`) on the wider rows."""
    views = [b.data.normalized(norm) for b in banks]
    weights = federate(views, policy, rounds, first_round)
    model = build_model(policy.model_spec, WIDTH)
    vector_to_model(model, weights)
    return model


def cross_bank_column(
    work: Path,
    key: dict[str, Any],
    banks: list[Bank],
    files: list[BankFile],
    evaluation: Evaluation,
    hyper: dict[str, Any],
    sketch: tuple[float, int, int],
    reuse: bool,
) -> tuple[list[FraudMLP], list[Normalizer | None], list[Bank]]:
    """The column's model at every bank, its normalisation, and the banks' wider rows.

    ``sketch`` is (ε, seed, noise_split). Under ``reuse`` the weights a run with the same
    ``key`` and sketch settings saved are loaded instead of trained (the sketches are
    rebuilt: they are seeded, so the rows are the same).
    """
    epsilon, seed, noise_split = sketch
    xb, spec = cross_bank_banks(banks, files, evaluation, epsilon, seed, noise_split=noise_split)
    policy = sketch_policy(policy_of(hyper), spec, hyper)
    meta, saved = work / "crossbank.json", work / "crossbank.npy"
    named = list(sketch) if noise_split != 1 else [epsilon, seed]  # runs before the split
    full_key = json.loads(json.dumps({**key, "sketch": named}, sort_keys=True))
    first_round = 1 if key["stats_round"] is None else key["stats_round"] + 1
    norm = consortium_norm(xb, 1)  # the wider rows' pooled training moments
    if reuse and meta.exists() and saved.exists() and json.loads(meta.read_text()) == full_key:
        model = build_model(policy.model_spec, WIDTH)
        vector_to_model(model, np.load(saved))
        print(f"[quality] fed + cross-bank: reused from {work}", flush=True)
    else:
        model = federated_cross_bank(xb, norm, policy, hyper["rounds"], first_round)
        np.save(saved, model_to_vector(model))
        meta.write_text(json.dumps(full_key, sort_keys=True, indent=1))
    return [model] * len(banks), [norm] * len(banks), xb

"""Shared by ``round_share.py`` and its workers' part: clocks, timings, keys and updates."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import tenseal as ts
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from he.codec import TRAILER_SLOTS, pack_update
from he.keys import fingerprint, generate_secret_context, public_context_bytes
from he.masking import MaskTerm, RoundBinding, pairwise_terms
from he.params import CkksParams
from he.ring import SealKit, kit_from_tenseal

TARGET_SHARE = 0.05
TARGET_PARAMS = 1_000_000
# The demo's first training round follows its statistics round; the node seeds with it.
FIRST_TRAINING_ROUND = 2
OWN_ID = "bank-own"


Clock = Literal["cpu", "wall"]
CLOCKS: dict[Clock, str] = {
    # Training runs on one torch thread and encryption on one thread too, so a node's
    # process CPU time is what it would wait on a machine of its own.
    "cpu": "CPU seconds of this process (a dedicated one-thread node's wall time)",
    "wall": "wall clock (inflated by whatever else shares this machine's cores)",
}


@dataclass(frozen=True)
class Timing:
    """Medians over repeated runs: wall-clock seconds and this process's CPU seconds."""

    wall: float
    cpu: float

    def on(self, clock: Clock) -> float:
        return self.cpu if clock == "cpu" else self.wall


def median_timing(action: Callable[[], object], repeats: int) -> Timing:
    """The median wall-clock and CPU time of ``repeats`` runs of ``action``."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        action()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return Timing(statistics.median(walls), statistics.median(cpus))


def encryption_share(t_enc: float, t_train: float) -> float:
    """The share of the round spent encrypting: ``T_enc / (T_train + T_enc)``."""
    if t_enc < 0 or t_train < 0 or t_enc + t_train == 0:
        raise ValueError("timings must be non-negative and not both zero")
    return t_enc / (t_train + t_enc)


@dataclass
class Crypto:
    """One member's CKKS secret context and its v2 masks for a cohort of ``peers + 1``."""

    params: CkksParams
    secret: ts.Context
    kit: SealKit
    fingerprint: str
    binding: RoundBinding
    terms: list[MaskTerm]


def crypto_setup(peers: int, params: CkksParams | None = None) -> Crypto:
    """Keys and masks, made once before any timing (the node derives its seeds at round start)."""
    params = params or CkksParams()
    secret = generate_secret_context(params)
    fp = fingerprint(public_context_bytes(secret))
    binding = RoundBinding("benchmark", FIRST_TRAINING_ROUND, fp)
    own = X25519PrivateKey.generate()
    cohort = {f"bank-{i:03d}": X25519PrivateKey.generate().public_key() for i in range(peers)}
    terms = [
        *pairwise_terms(own, OWN_ID, cohort, binding),
        MaskTerm(OWN_ID, os.urandom(32), 1),
    ]
    return Crypto(params, secret, kit_from_tenseal(secret, params), fp, binding, terms)


def update_values(length: int, seed: int = 0) -> np.ndarray:
    """A packed update ``[n w, n, tag]`` of ``length`` values (weights ~ N(0, 0.1))."""
    if length <= TRAILER_SLOTS:
        raise ValueError(f"an update has more than {TRAILER_SLOTS} values")
    weights = np.random.default_rng(seed).normal(0, 0.1, length - TRAILER_SLOTS)
    return pack_update(weights, 1000, 1.5)

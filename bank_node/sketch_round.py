"""The node's part in a sketch round: build, noise and keep its sketches; decrypt the sum.

A sketch round (``protocol.SketchSpec``) sums every bank's noised counterparty sketches
(``models.counterparty_sketch``) under the same secure aggregation as a statistics round.
The node keeps its own noised sketches (0600) until the sum is published, then stores what
the *other* members added, the sum less its own, with the as-of dates, for the features
of training and scoring (``sketch_features_for``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bank_node.checks import Refused
from bank_node.config import NodeConfig
from bank_node.data import load_transactions
from bank_node.keys import Keyring
from bank_node.state import NodeState, state_file
from models.counterparty_sketch import (
    AsOf,
    SketchShape,
    add_noise,
    build_sketches,
    features_as_of,
    flow_sensitivity,
    gaussian_sigma,
    others_sketch,
    sketch_key,
)
from protocol import RoundInfo, SketchSpec

log = logging.getLogger("bank_node")
DAY_SECONDS = 86_400


def own_sketch_file(state_dir: Path, number: int) -> Path:
    """This bank's own noised sketches of round ``number`` (kept to subtract them later)."""
    return state_dir / f"sketch-own-round-{number}.npy"


def others_sketch_file(state_dir: Path, number: int) -> Path:
    """The other members' summed sketches of round ``number``."""
    return state_dir / f"sketch-round-{number}.npy"


def spec_dates(spec: SketchSpec) -> list[AsOf]:
    """The spec's as-of dates with its window and label delay."""
    return [
        AsOf(
            np.datetime64(day), spec.window_days * DAY_SECONDS, spec.label_delay_days * DAY_SECONDS
        )
        for day in spec.as_of
    ]


def spec_shape(spec: SketchSpec) -> SketchShape:
    return SketchShape(depth=spec.depth, width=spec.width)


def spec_sigma(spec: SketchSpec) -> float:
    """Each bank's Gaussian noise: (epsilon, delta)-DP for one flow over all its sketches."""
    sensitivity = flow_sensitivity(spec_shape(spec), len(spec.as_of))
    return gaussian_sigma(spec.epsilon, spec.delta, sensitivity)


def check_sketch_sum(number: int, values: np.ndarray, spec: SketchSpec) -> None:
    """A sketch aggregate holds exactly the spec's sketch values (else ``Refused``)."""
    if np.ndim(values) != 1 or np.size(values) != spec.values:
        raise Refused(
            "aggregate_shape",
            f"round {number}: the sketch aggregate holds {np.size(values)} values, not the "
            f"{spec.values} its policy's counterparty_sketch asks for",
        )


@dataclass(frozen=True)
class CrossBankSketch:
    """What the other members counted, as of each date of a published sketch round."""

    round_number: int
    spec: SketchSpec
    others: np.ndarray  # (dates, channels, depth, width)

    def features(self, key: bytes, frame: pd.DataFrame) -> np.ndarray:
        """Each row's cross-bank features from the latest sketch dated on or before it."""
        return features_as_of(self.others, spec_dates(self.spec), key, spec_shape(self.spec), frame)


class SketchRounds:
    """A node's sketch rounds: its contribution, and the others' sums once published.

    ``checked(number, epoch)`` is ``PublishedModels.global_weights``: the checked,
    decrypted aggregate and its count (here the number of banks, one unit each).
    """

    def __init__(
        self,
        config: NodeConfig,
        keys: Keyring,
        checked: Callable[[int, str], tuple[np.ndarray, float]],
        state: Callable[[], NodeState],
    ) -> None:
        self.config = config
        self.keys = keys
        self._checked = checked
        self._state = state

    def key(self, fingerprint: str) -> bytes:
        """The sketch hash key of an epoch: HKDF over its integrity key, members only."""
        return sketch_key(self.keys.integrity_for(fingerprint), fingerprint)

    def contribution(self, rnd: RoundInfo) -> tuple[np.ndarray, int]:
        """This bank's noised sketches, flat, and its count: 1 (banks are what is counted,
        so the sum reveals no bank's number of flows)."""
        spec = round_spec(rnd)
        frame = load_transactions(self.config.data_file)
        exact = build_sketches(frame, self.key(rnd.key_epoch), spec_shape(spec), spec_dates(spec))
        noised = add_noise(exact, spec_sigma(spec))  # exact counts never leave this function
        path = own_sketch_file(self.config.state_dir, rnd.number)
        _write_private(path, noised)
        return noised.ravel(), 1

    def conclude(self, rnd: RoundInfo) -> CrossBankSketch:
        """Decrypt a published sketch round, subtract this bank's own share, keep the rest."""
        spec = round_spec(rnd)
        mean, banks = self._checked(rnd.number, rnd.key_epoch)  # checked as sketches there
        shape = (len(spec.as_of), *spec_shape(spec).cells)
        summed = (mean * banks).reshape(shape)  # the check divided the sum by its count
        own_path = own_sketch_file(self.config.state_dir, rnd.number)
        own = np.load(own_path) if own_path.exists() else np.zeros(shape)
        others = others_sketch(summed, own)
        _write_private(others_sketch_file(self.config.state_dir, rnd.number), others)
        state = self._state()
        state.sketches[str(rnd.number)] = {"as_of": list(spec.as_of), "spec": spec.to_dict()}
        state.save(state_file(self.config.state_dir))
        log.info("round %s: cross-bank sketches of %d banks kept", rnd.number, int(banks))
        return CrossBankSketch(rnd.number, spec, others)

    def latest(self) -> CrossBankSketch | None:
        """The newest kept sketch round, or None when this node has none."""
        kept = self._state().sketches
        if not kept:
            return None
        number = max(int(n) for n in kept)
        spec = SketchSpec.from_dict(kept[str(number)]["spec"])
        others = np.load(others_sketch_file(self.config.state_dir, number))
        return CrossBankSketch(number, spec, others)


def round_spec(rnd: RoundInfo) -> SketchSpec:
    """The round's sketch spec; ``Refused`` for a sketch round of a policy without one."""
    spec = rnd.policy.counterparty_sketch
    if spec is None:
        raise Refused(
            "aggregate_unusable",
            f"round {rnd.number} is a sketch round of a policy without sketches",
        )
    return spec


def _write_private(path: Path, values: np.ndarray) -> None:
    """Save ``values`` readable by this node's user only: they are this bank's counts."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        np.save(out, values)
    tmp.replace(path)

"""The node's part in a sketch round: build, noise and keep its sketches; decrypt the sum.

A sketch round (``protocol.SketchSpec``) sums every bank's noised counterparty sketches
(``models.counterparty_sketch``) under the same secure aggregation as a statistics round.
The node keeps its own noised sketches (0600) until the sum is published, then stores what
the *other* members added, the sum less its own, with the as-of dates, for the features
of training and scoring (``sketch_features_for``).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bank_node import metrics as node_metrics
from bank_node.checks import Refused
from bank_node.config import Evaluation, NodeConfig
from bank_node.data import load_transactions
from bank_node.keys import Keyring
from bank_node.splits import split_frame
from bank_node.state import NodeState, state_file
from bank_node.training import LocalData
from he.errors import HEError
from models.counterparty_sketch import (
    AsOf,
    SketchShape,
    add_noise,
    build_sketches,
    dates_per_flow,
    features_as_of,
    flow_sensitivity,
    gaussian_sigma,
    others_sketch,
    sketch_key,
)
from models.privacy import epsilon_after, record_gaussian_release
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


def spec_sensitivity(spec: SketchSpec) -> float:
    """L2 change of a bank's sketches for one flow, which is in at most ``dates_per_flow``
    of them (those whose windows overlap)."""
    return flow_sensitivity(spec_shape(spec), dates_per_flow(spec_dates(spec)))


def spec_sigma(spec: SketchSpec) -> float:
    """The Gaussian mechanism's noise: (epsilon, delta)-DP for one flow over all of a bank's
    sketches. It is what protects a bank: its own noise and that of ``noise_split - 1`` more
    contributors outside any coalition (``bank_sigma``)."""
    return gaussian_sigma(spec.epsilon, spec.delta, spec_sensitivity(spec))


def bank_sigma(spec: SketchSpec) -> float:
    """The noise each bank adds to its own sketches: its share, ``sigma / sqrt(noise_split)``, so
    that any ``noise_split`` contributors' noise together has ``spec_sigma``'s variance."""
    return spec_sigma(spec) / math.sqrt(spec.noise_split)


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
    decrypted aggregate and its count (here the number of banks, one unit each);
    ``listed()`` the portal's latest rounds.
    """

    def __init__(
        self,
        config: NodeConfig,
        keys: Keyring,
        checked: Callable[[int, str], tuple[np.ndarray, float]],
        state: Callable[[], NodeState],
        listed: Callable[[], list[RoundInfo]],
    ) -> None:
        self.config = config
        self.keys = keys
        self._checked = checked
        self._state = state
        self._listed = listed

    def key(self, fingerprint: str) -> bytes:
        """The sketch hash key of an epoch: HKDF over its integrity key, members only."""
        return sketch_key(self.keys.integrity_for(fingerprint), fingerprint)

    def contribution(self, rnd: RoundInfo) -> tuple[np.ndarray, int]:
        """This bank's noised sketches, flat, and its count: 1 (banks are what is counted,
        so the sum reveals no bank's number of flows)."""
        spec = round_spec(rnd)
        frame = load_transactions(self.config.data_file)
        exact = build_sketches(frame, self.key(rnd.key_epoch), spec_shape(spec), spec_dates(spec))
        noised = add_noise(exact, bank_sigma(spec))  # exact counts never leave this function
        self.spend(rnd, spec)
        path = own_sketch_file(self.config.state_dir, rnd.number)
        _write_private(path, noised)
        return noised.ravel(), 1

    def spend(self, rnd: RoundInfo, spec: SketchSpec) -> None:
        """Count the sketches' noise in this bank's privacy budget, as DP-SGD rounds are.

        A flow is a training row too, so the same accountant composes both; a later DP
        round's claim and budget check start from it. Saved before the upload: a crash and
        a second noising count twice, the safe direction. The multiplier is the mechanism's
        (``spec_sigma``), whose noise, under ``noise_split > 1``, is this bank's together
        with that of the other contributors the spec counts on (docs/threat-model.md).
        """
        state = self._state()
        z = spec_sigma(spec) / spec_sensitivity(spec)
        state.dp_accountant = record_gaussian_release(state.dp_accountant, z)
        delta = rnd.policy.dp_delta if rnd.policy.dp_enabled else spec.delta
        state.epsilon = epsilon_after(state.dp_accountant, delta)
        state.save(state_file(self.config.state_dir))
        node_metrics.set_privacy_spent(state.epsilon)

    def conclude(self, rnd: RoundInfo) -> CrossBankSketch:
        """Decrypt a published sketch round, subtract this bank's own share, keep the rest."""
        spec = round_spec(rnd)
        mean, banks = self._checked(rnd.number, rnd.key_epoch)  # checked as sketches there
        shape = (len(spec.as_of), *spec_shape(spec).cells)
        summed = (mean * banks).reshape(shape)  # the check divided the sum by its count
        own_path = own_sketch_file(self.config.state_dir, rnd.number)
        own = np.load(own_path) if own_path.exists() else np.zeros(shape)
        others = others_sketch(summed, own)
        others_path = others_sketch_file(self.config.state_dir, rnd.number)
        _write_private(others_path, others)
        others_path.with_suffix(".json").write_text(json.dumps(spec.to_dict()))
        state = self._state()
        state.sketches[str(rnd.number)] = {"as_of": list(spec.as_of), "spec": spec.to_dict()}
        state.save(state_file(self.config.state_dir))
        log.info("round %s: cross-bank sketches of %d banks kept", rnd.number, int(banks))
        return CrossBankSketch(rnd.number, spec, others)

    def kept_for(self, spec: SketchSpec) -> int | None:
        """The newest kept sketch round of ``spec``, or None when this node has none."""
        return kept_round(self._state().sketches, spec)

    def conclude_listed(self, spec: SketchSpec) -> int | None:
        """Conclude the newest published sketch round of ``spec`` the portal lists, if any."""
        for listed in self._listed():
            if listed.is_sketch and listed.state == "published":
                if listed.policy.counterparty_sketch == spec:
                    return self.conclude(listed).round_number
        return None

    def data_for(self, rnd: RoundInfo, base: LocalData) -> LocalData:
        """``base``, or with the cross-bank features when ``rnd``'s policy asks for them.

        ``HEError`` (the node sits the round out) when no sketch round of the policy's spec
        is kept yet: the node concludes a published one when it reviews the rounds.
        """
        spec = rnd.policy.counterparty_sketch
        if spec is None:
            return base
        number = self.kept_for(spec)
        if number is None:  # a training round may open before this node reviewed the sketch
            number = self.conclude_listed(spec)
        if number is None:
            raise HEError(
                f"round {rnd.number}: its policy adds cross-bank features and this node keeps "
                "no published sketch round of its spec yet"
            )
        config = self.config
        return sketched_local_data(
            config.data_file,
            config.evaluation,
            config.state_dir,
            number,
            self.key(rnd.key_epoch),
            base,
        )


def kept_round(kept: dict[str, Any], spec: SketchSpec) -> int | None:
    """The newest round of ``spec`` among a node state's kept ``sketches``, or None."""
    same = [
        int(n) for n, about in kept.items()
        if isinstance(about, dict) and about.get("spec") == spec.to_dict()
    ]  # fmt: skip
    return max(same, default=None)


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


def with_cross_bank(data: LocalData, parts: list[np.ndarray], extra: np.ndarray) -> LocalData:
    """``data`` with the cross-bank columns ``extra`` (rows in ``frame`` order) appended."""
    tr, va, te = parts
    return LocalData(
        np.hstack([data.x_train, extra[tr]]),
        data.y_train,
        np.hstack([data.x_val, extra[va]]),
        data.y_val,
        np.hstack([data.x_test, extra[te]]),
        data.y_test,
    )


def sketched_local_data(
    path: Path, evaluation: Evaluation, state_dir: Path, number: int, key: bytes, base: LocalData
) -> LocalData:
    """``base`` (the bank's splits, as the policy's feature set) with the cross-bank
    features of kept sketch round ``number`` appended.

    Each row's features come from the latest sketch dated on or before it
    (``models.counterparty_sketch.features_as_of``): a row of the test period sees no
    label of its own period, and a row before the first date sees zeros.
    """
    index, extra = _cross_bank_columns(path, evaluation, state_dir, number, key)
    return with_cross_bank(base, list(index), extra)


@functools.lru_cache(maxsize=2)
def _cross_bank_columns(
    path: Path, evaluation: Evaluation, state_dir: Path, number: int, key: bytes
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Each split's rows in the file, and every row's cross-bank features (kept a while:
    the node asks for the same round's data several times)."""
    frame = load_transactions(path)
    parts = split_frame(frame, evaluation, path)
    spec_path = others_sketch_file(state_dir, number).with_suffix(".json")
    sketch = CrossBankSketch(
        number,
        SketchSpec.from_dict(json.loads(spec_path.read_text())),
        np.load(others_sketch_file(state_dir, number)),
    )
    extra = sketch.features(key, frame)
    return tuple(frame.index.get_indexer(p.index) for p in parts), extra

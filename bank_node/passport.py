"""A model version's passport: where the model came from and how it was judged.

Every version in the node's registry (``bank_node.registry``) carries one, written as
``passport.json`` beside the model files. It is the evidence a fraud team attaches to an
alert (``bank-node cases export``): the published round, the policy it was trained under
(name, version and the digest the banks signed), the key epoch, this bank's signed ε,
the digests of the aggregate and of every update in it, the consortium's evaluation (the
gate's figures, under a gated policy), this bank's own evaluation, and the digest of the
exact columns the model reads (its feature set's, then a sketch policy's cross-bank ones),
which loading the model for scoring checks (``bank_node.scoring_model``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bank_node.config import ConfigError
from models.counterparty_sketch import SKETCH_FEATURE_NAMES
from models.feature_sets import feature_set
from models.features import FEATURE_NAMES
from protocol import DEFAULT_FEATURE_SET, PolicySnapshot, ProtocolError, RoundInfo, SketchSpec
from protocol.codec import decode, encode

PASSPORT_FILE = "passport.json"

# The figures of the gate's record that describe the consortium's evaluation of a candidate.
CONSORTIUM_FIGURES = (
    "round",
    "decision",
    "aggregate_digest",
    "candidate_auprc",
    "current_auprc",
    "candidate_recall",
    "current_recall",
)


def feature_set_version(names: Sequence[str] = FEATURE_NAMES) -> str:
    """A short digest of the feature names in order: a model only fits the features it knew."""
    return _short_digest(",".join(names))


def inputs_version(feature_set_name: str, sketch: SketchSpec | None) -> str:
    """The digest of the exact columns a model reads, in order (a passport's ``feature_set``).

    Without a sketch: `feature_set_version` of the set's names, the digest every passport
    carried before sketches existed. With one: the set's names, then
    ``SKETCH_FEATURE_NAMES``, then the whole sketch spec (as-of dates, window, label delay,
    depth, width, epsilon, delta), since each field changes the value a column holds for the
    same transaction. The key epoch is left out: it chooses the cells, not what they count,
    and the passport records it apart.
    """
    names = list(feature_set(feature_set_name).feature_names)
    if sketch is None:
        return feature_set_version(names)
    spec = json.dumps(sketch.to_dict(), sort_keys=True, separators=(",", ":"))
    return _short_digest(",".join([*names, *SKETCH_FEATURE_NAMES]) + "|counterparty_sketch:" + spec)


def policy_inputs_version(policy: PolicySnapshot) -> str:
    """`inputs_version` of the columns a model of ``policy`` reads, as every scorer feeds them."""
    return inputs_version(policy.feature_set, policy.counterparty_sketch)


def describe_inputs(policy: PolicySnapshot) -> str:
    """The columns a model of ``policy`` reads, in words (for error messages)."""
    spec = feature_set(policy.feature_set)
    text = f"feature set {spec.name!r} ({spec.n_features} columns)"
    if policy.counterparty_sketch is None:
        return text + " only"
    return f"{text} and {len(SKETCH_FEATURE_NAMES)} cross-bank sketch columns"


def _short_digest(text: str) -> str:
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def version_name(round_number: int) -> str:
    """The registry's name of the global model of published round ``round_number``."""
    return f"round-{round_number}"


@dataclass(frozen=True)
class PolicyRef:
    """The policy a model was trained under, as the banks approved it."""

    name: str
    version: int
    digest: str


@dataclass(frozen=True)
class Passport:
    """One model version's provenance and evaluations (``passport.json``).

    ``adopted`` is true once the model may be served: at once under an ungated policy,
    after this bank's own gate verdict adopted it under a gated one. ``held`` names why an
    adopted or waiting version was not promoted automatically (None: promoted, or never
    offered); ``held_detail`` says it in words.
    """

    version: str
    round: int
    created_at: str
    policy: PolicyRef
    key_epoch: str
    epsilon: float | None
    aggregate_digest: str
    input_digests: dict[str, Any]  # bank -> the digest of its update in the aggregate
    local_evaluation: dict[str, Any]
    consortium_evaluation: dict[str, Any] | None
    feature_set: str  # `inputs_version`: the digest of the columns the model reads
    threshold: float | None
    gated: bool
    adopted: bool
    held: str | None = None
    held_detail: str = ""
    # The policy's feature set by name (models.feature_sets); a passport written before the
    # field existed was a model of the account-history set.
    feature_set_name: str = DEFAULT_FEATURE_SET

    @property
    def local_auprc(self) -> float | None:
        value = self.local_evaluation.get("auprc")
        return None if value is None else float(value)

    @property
    def consortium_auprc(self) -> float | None:
        value = (self.consortium_evaluation or {}).get("candidate_auprc")
        return None if value is None else float(value)

    def to_dict(self) -> dict[str, Any]:
        return encode(self)

    def with_verdict(self, verdict: dict[str, Any]) -> Passport:
        """This passport with the gate's verdict on it: its figures, and adopted or not."""
        figures = {name: verdict.get(name) for name in CONSORTIUM_FIGURES}
        return replace(
            self, consortium_evaluation=figures, adopted=verdict.get("decision") == "adopt"
        )

    def holding(self, reason: str | None, detail: str = "") -> Passport:
        return replace(self, held=reason, held_detail=detail)


def passport_for(
    rnd: RoundInfo, bank: str, local: dict[str, Any], threshold: float | None
) -> Passport:
    """The passport of published round ``rnd``'s model as this bank evaluated it."""
    inputs = rnd.manifest.inputs if rnd.manifest is not None else ()
    own = [i.epsilon for i in inputs if i.bank == bank]
    # The ε this bank signed with its update to this round; else what its accountant says.
    epsilon = own[0] if own and own[0] is not None else local.get("epsilon")
    return Passport(
        version=version_name(rnd.number),
        round=rnd.number,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        policy=PolicyRef(rnd.policy.name, rnd.policy.version, rnd.policy.digest()),
        key_epoch=rnd.key_epoch,
        epsilon=_finite(epsilon),
        aggregate_digest=rnd.aggregate_digest,
        input_digests={i.bank: i.digest for i in inputs},
        local_evaluation={name: _finite(value) for name, value in local.items()},
        consortium_evaluation=None,
        feature_set=policy_inputs_version(rnd.policy),
        feature_set_name=rnd.policy.feature_set,
        threshold=_finite(threshold),
        gated=rnd.policy.gated,
        adopted=not rnd.policy.gated,
    )


def read_passport(directory: Path) -> Passport:
    """The passport in ``directory``, or a ConfigError naming the file and what is wrong."""
    path = directory / PASSPORT_FILE
    if not path.exists():
        raise ConfigError(f"{path} does not exist: {directory.name} is not a complete version")
    try:
        return decode(Passport, json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, ProtocolError) as exc:
        raise ConfigError(f"{path}: not a model passport: {exc}") from exc


def write_passport(directory: Path, passport: Passport) -> None:
    """Write ``passport.json`` whole or not at all (a reader never sees half a file)."""
    path = directory / PASSPORT_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(passport.to_dict(), indent=2, sort_keys=True))
    tmp.replace(path)


def _finite(value: Any) -> float | None:
    """A JSON-safe figure: None for a missing, NaN or infinite one."""
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None

"""The policy snapshot: the one declared shape of the rules a round runs under.

The portal freezes a ``PolicySnapshot`` into every round it opens and sends it with the
round; the node trains by it. Its field list, its defaults for the model and for CKKS,
and the rule for "differential privacy is on" are defined here and nowhere else.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, fields
from typing import Any

from he.errors import HEError
from he.params import CkksParams
from protocol.codec import decode, encode
from protocol.errors import ProtocolError
from protocol.secagg import SECURE_AGGREGATION_PROTOCOLS
from protocol.sketch import SketchSpec

# The CKKS parameters are chosen (and justified) in ``he.params.CkksParams``; this is
# their one wire form, the default of every policy and of `bank-node keygen`.
DEFAULT_CKKS_PARAMS: dict[str, Any] = CkksParams().to_dict()

DEFAULT_MODEL_SPEC: dict[str, Any] = {"kind": "mlp", "hidden": [32, 16], "seed": 7, "loss": "bce"}

# The smallest cohort an aggregate may have: the portal's model, its serializer, the
# database, the charter and the node all refuse less.
MIN_BANKS_FLOOR = 3
# Why the floor exists, quoted wherever a smaller min_banks is refused.
MIN_BANKS_FLOOR_TEXT = (
    "with two banks each learns the other's update from the aggregate by subtraction"
)


# The gate's alert budget unless a policy says otherwise: 1% of rows flagged.
DEFAULT_GATE_ALERT_RATE = 0.01

# The server optimiser every node applies to the decrypted average (models.server_opt).
SERVER_OPTIMIZERS: tuple[str, ...] = ("fedavg", "fedavgm", "fedadam", "fedyogi", "feddyn")
# Their fields' defaults: plain FedAvg, today's behaviour. While a snapshot holds exactly
# these, its canonical JSON leaves them out, so the digests banks signed before the fields
# existed still name the same policies.
SERVER_OPT_DEFAULTS: dict[str, Any] = {
    "server_optimizer": "fedavg",
    "server_lr": 1.0,
    "server_momentum": 0.9,
    "server_beta1": 0.9,
    "server_beta2": 0.99,
    "server_tau": 0.001,
}


# The feature set a policy names when it names none: the account-history features
# (models.feature_sets, "aml-v1"). A snapshot holding it leaves the field out of its
# canonical JSON, so digests signed before the field existed still name the same policies.
DEFAULT_FEATURE_SET = "aml-v1"
FEATURE_SET_PATTERN = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


def default_ckks_params() -> dict[str, Any]:
    """A fresh copy of the default CKKS parameters (callers may mutate it)."""
    return copy.deepcopy(DEFAULT_CKKS_PARAMS)


def default_model_spec() -> dict[str, Any]:
    """A fresh copy of the default model specification (callers may mutate it)."""
    return copy.deepcopy(DEFAULT_MODEL_SPEC)


def dp_enabled(target_epsilon: float | None, noise_multiplier: float | None) -> bool:
    """DP-SGD is on when a policy sets a privacy budget or a fixed noise multiplier."""
    return target_epsilon is not None or noise_multiplier is not None


@dataclass(frozen=True)
class PolicySnapshot:
    """The frozen copy of a policy version that a round opens under.

    Every field is required on the wire: a bank will sign ``digest()``, so it must never
    sign a policy with a field filled in by a default it did not see.
    """

    name: str
    version: int
    model_spec: dict[str, Any]
    n_features: int
    vector_length: int
    local_epochs: int
    batch_size: int
    learning_rate: float
    fedprox_mu: float
    min_banks: int
    deadline_seconds: int
    max_rounds: int
    ckks_params: dict[str, Any]
    normalize_features: bool
    dp_target_epsilon: float | None
    dp_delta: float
    dp_max_grad_norm: float
    dp_noise_multiplier: float | None
    # Secure aggregation: "v2" (masked, seeded, packed; docs/secure-aggregation.md) or "v1"
    # (one shared key, kept readable for old rounds).
    secure_aggregation: str
    # v2: how many nodes recompute the aggregate from the signed submissions before they
    # decrypt it; 0 = every node. Each node decides alone, at random, with probability
    # aggregate_checkers / inputs, so the operator cannot know who will check.
    aggregate_checkers: int
    # Bounded influence (docs/robustness.md): an honest bank counts at most this share of
    # the statistics round's consortium rows; None = FedAvg by rows, uncapped.
    max_bank_share: float | None
    # An honest bank clips its trained weights to this L2 distance from the round's base,
    # and every node refuses an aggregate that moved further (update_too_large); None = off.
    update_clip_norm: float | None
    # The evaluation gate: after each training round the banks sum encrypted score
    # histograms of the candidate and the current model; the candidate becomes a base only
    # if its consortium AUPRC is at most this much below the current one. None = no gate.
    gate_tolerance: float | None
    # The alert budget at which the gate reports recall: this fraction of rows is flagged.
    gate_alert_rate: float
    # The server optimiser each node applies to the decrypted average (models.server_opt,
    # Reddi et al. 2021): "fedavg" (the average itself), "fedavgm", "fedadam", "fedyogi" or
    # "feddyn" (Acar et al. 2021, its alpha the fedprox_mu); its learning rate, FedAvgM's
    # momentum, and the adaptive ones' beta1, beta2 and tau.
    server_optimizer: str
    server_lr: float
    server_momentum: float
    server_beta1: float
    server_beta2: float
    server_tau: float
    # The features every bank computes for the model (models.feature_sets): its
    # n_features is that set's width. Last, with a default: snapshots stored before the
    # field existed read as the account-history set they were trained on.
    feature_set: str = DEFAULT_FEATURE_SET
    # Cross-bank counterparty sketches (protocol.sketch; docs/threat-model.md): a sketch
    # round before training, and its features. With a default too: None is what the
    # canonical JSON leaves out, so a snapshot without it has the digest banks signed.
    counterparty_sketch: SketchSpec | None = None

    def __post_init__(self) -> None:
        if not FEATURE_SET_PATTERN.fullmatch(self.feature_set) or len(self.feature_set) > 32:
            raise ProtocolError(
                "feature_set",
                f"must be a feature set name like {DEFAULT_FEATURE_SET!r} "
                f"(got {self.feature_set!r})",
            )
        if self.secure_aggregation not in SECURE_AGGREGATION_PROTOCOLS:
            raise ProtocolError(
                "secure_aggregation",
                f"must be one of {', '.join(SECURE_AGGREGATION_PROTOCOLS)} "
                f"(got {self.secure_aggregation!r})",
            )
        if self.aggregate_checkers < 0:
            raise ProtocolError("aggregate_checkers", "must be 0 (every node) or more")
        self._check_robustness()
        self._check_server_optimizer()
        if self.min_banks < MIN_BANKS_FLOOR:
            raise ProtocolError(
                "min_banks",
                f"must be at least {MIN_BANKS_FLOOR} (got {self.min_banks}): "
                f"{MIN_BANKS_FLOOR_TEXT}",
            )
        sketch = self.counterparty_sketch
        if sketch is not None and sketch.noise_split > self.min_banks - 1:
            raise ProtocolError(
                "counterparty_sketch.noise_split",
                f"is {sketch.noise_split}, above min_banks - 1 = {self.min_banks - 1}: a "
                f"sketch sum may hold only {self.min_banks} banks, and against any one of "
                "them the others' noise must still add up to the guarantee; lower it or "
                "raise min_banks",
            )
        try:
            CkksParams.from_dict(self.ckks_params)
        except HEError as exc:
            raise ProtocolError("ckks_params", str(exc)) from exc

    def _check_robustness(self) -> None:
        """The bounded-influence and gate fields, each within its meaningful range."""
        share = self.max_bank_share
        if share is not None and not 0.0 < share <= 1.0:
            raise ProtocolError("max_bank_share", f"must be in (0, 1] or null (got {share})")
        if share is not None and not self.normalize_features:
            raise ProtocolError(
                "max_bank_share",
                "needs normalize_features: the cap is a share of the consortium's rows, "
                "which only the statistics round counts",
            )
        if self.update_clip_norm is not None and not self.update_clip_norm > 0.0:
            raise ProtocolError(
                "update_clip_norm", f"must be positive or null (got {self.update_clip_norm})"
            )
        tol = self.gate_tolerance
        if tol is not None and not 0.0 <= tol <= 1.0:
            raise ProtocolError("gate_tolerance", f"must be in [0, 1] or null (got {tol})")
        if not 0.0 < self.gate_alert_rate < 1.0:
            raise ProtocolError(
                "gate_alert_rate", f"must be in (0, 1) (got {self.gate_alert_rate})"
            )

    def _check_server_optimizer(self) -> None:
        """The server optimiser is one we implement, each hyperparameter within its range."""
        if self.server_optimizer not in SERVER_OPTIMIZERS:
            raise ProtocolError(
                "server_optimizer",
                f"must be one of {', '.join(SERVER_OPTIMIZERS)} (got {self.server_optimizer!r})",
            )
        if not 0.0 < self.server_lr <= 10.0:
            raise ProtocolError("server_lr", f"must be in (0, 10] (got {self.server_lr})")
        for name in ("server_momentum", "server_beta1", "server_beta2"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ProtocolError(name, f"must be in [0, 1) (got {value})")
        if not 0.0 < self.server_tau <= 1.0:
            raise ProtocolError("server_tau", f"must be in (0, 1] (got {self.server_tau})")
        if self.server_optimizer == "feddyn":
            if not self.fedprox_mu > 0.0:
                raise ProtocolError(
                    "fedprox_mu",
                    "feddyn takes its alpha from fedprox_mu: set it above 0 (0.003 was chosen "
                    f"on the validation split; got {self.fedprox_mu})",
                )
            if self.dp_enabled:
                raise ProtocolError(
                    "server_optimizer",
                    "feddyn is not available with DP-SGD (a DP budget or noise multiplier "
                    "is set): choose fedavg, fedavgm, fedadam or fedyogi",
                )

    @property
    def gated(self) -> bool:
        """Training rounds under this policy pass the evaluation gate before they are a base."""
        return self.gate_tolerance is not None

    @property
    def dp_enabled(self) -> bool:
        return dp_enabled(self.dp_target_epsilon, self.dp_noise_multiplier)

    @property
    def masked(self) -> bool:
        """Rounds under this policy run secure aggregation v2."""
        return self.secure_aggregation == "v2"

    @property
    def ckks(self) -> CkksParams:
        return CkksParams.from_dict(self.ckks_params)

    @classmethod
    def from_dict(cls, data: object) -> PolicySnapshot:
        """Parse a snapshot, or raise ``ProtocolError`` naming the first bad field."""
        return decode(cls, data)

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as stored in ``Round.policy_snapshot`` and sent to banks (the
        sketch spec as ``SketchSpec.to_dict`` writes it: ``noise_split`` only when not 1)."""
        data = encode(self)
        if self.counterparty_sketch is not None:
            data["counterparty_sketch"] = self.counterparty_sketch.to_dict()
        return data

    def canonical_json(self) -> bytes:
        """The deterministic encoding that ``digest()`` hashes.

        ``json.dumps`` of ``to_dict()`` with keys sorted at every level, no whitespace
        (separators ``","`` and ``":"``), ASCII-only output (``\\uXXXX`` escapes), floats
        as Python's shortest round-trip ``repr`` (``0.001``, ``1e-05``, ``1.0``), ints bare,
        absent values as ``null``, encoded as UTF-8. Ints given for float fields are made
        floats by ``from_dict`` first, so ``1`` and ``1.0`` hash the same. The server
        optimiser's fields are left out while every one holds its default
        (``SERVER_OPT_DEFAULTS``: plain FedAvg), so a policy's digest is the one it had
        before those fields existed; any other value puts all six in. ``feature_set`` is
        left out likewise while it is ``DEFAULT_FEATURE_SET``, and ``counterparty_sketch``
        while it is None (off).
        """
        data = self.to_dict()
        if data["feature_set"] == DEFAULT_FEATURE_SET:
            del data["feature_set"]
        if data["counterparty_sketch"] is None:
            del data["counterparty_sketch"]
        if all(data[name] == value for name, value in SERVER_OPT_DEFAULTS.items()):
            for name in SERVER_OPT_DEFAULTS:
                del data[name]
        text = json.dumps(
            data,
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
        )
        return text.encode("utf-8")

    def digest(self) -> str:
        """Hex SHA-256 of ``canonical_json()``: what a bank signs to approve this policy."""
        return hashlib.sha256(self.canonical_json()).hexdigest()


# Every field of the snapshot, in wire order: the one list the portal derives its own from.
POLICY_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PolicySnapshot))

# Fields the portal computes itself rather than taking from an operator.
DERIVED_POLICY_FIELDS: frozenset[str] = frozenset({"version", "n_features", "vector_length"})

"""Rounds as a bank sees them: round info, the published manifest, upload receipts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from protocol.codec import decode, encode
from protocol.errors import ProtocolError
from protocol.policy import PolicySnapshot
from protocol.secagg import SecAggRecord

# v1: open -> aggregating -> published | failed.
# v2: sharing -> open -> unmasking -> aggregating -> published | failed.
ROUND_STATES = ("sharing", "open", "unmasking", "aggregating", "published", "failed")
# An "evaluation" round is the gate of a training round (docs/robustness.md): its
# ``candidate_round`` is that training round and its ``base_round`` the model it is
# compared against. A "sketch" round sums the banks' counterparty sketches (protocol.sketch).
ROUND_KINDS = ("training", "statistics", "evaluation", "sketch")


@dataclass(frozen=True)
class ManifestInput:
    """One update an aggregate includes, with the bank's signature over it.

    ``signature`` (base64 Ed25519 over ``he.signing.update_message_v2``, or v1 for an
    upload without privacy claim) and the signed claim let every node check, under the
    bank's *roster* key, that the bank itself sent this update.
    """

    bank: str
    digest: str
    signature: str = ""
    epsilon: float | None = None
    budget_left: bool | None = None


@dataclass(frozen=True)
class Manifest:
    """What a published aggregate is the sum of, under which key."""

    round: int
    key_epoch: str
    aggregate_digest: str
    inputs: tuple[ManifestInput, ...]
    # v2 rounds: the mask keys, survivors, dropouts and signed reveals (None for v1).
    secure_aggregation: SecAggRecord | None = None

    @classmethod
    def from_dict(cls, data: object) -> Manifest:
        return decode(cls, data)

    def to_dict(self) -> dict[str, Any]:
        data = encode(self)
        if data["secure_aggregation"] is None:
            del data["secure_aggregation"]  # a v1 manifest keeps its v1 shape
        return data

    @property
    def banks(self) -> tuple[str, ...]:
        return tuple(i.bank for i in self.inputs)


@dataclass(frozen=True)
class PrivacySpend:
    """A bank's reported cumulative epsilon after a round (round detail only)."""

    bank: str
    epsilon_spent: float
    budget_left: bool | None


@dataclass(frozen=True)
class RoundInfo:
    """A round as ``GET /rounds/current``, ``/rounds/`` and ``/rounds/{n}`` return it.

    ``manifest`` is None until the round is published (the wire carries ``{}``).
    ``submitted_by_you``, ``privacy`` and ``disputed`` come only with the detail of one
    round; ``disputed`` is true while enough member banks' signed objections name it and
    no clearance by as many has been signed (docs/governance.md, "Disputed rounds").
    """

    number: int
    kind: str
    vector_length: int
    stats_round: int | None
    state: str
    policy: PolicySnapshot
    key_epoch: str
    base_round: int | None
    base_key_epoch: str | None
    opened_at: datetime
    deadline_at: datetime
    aggregating_at: datetime | None
    closed_at: datetime | None
    failure_reason: str
    aggregate_digest: str
    aggregate_size: int | None
    manifest: Manifest | None
    submissions: int
    submitted_by_you: str | None = None
    privacy: tuple[PrivacySpend, ...] = ()
    disputed: bool = False
    candidate_round: int | None = None
    # A gated training round: its evaluation round, and the decision the portal derived
    # from the banks' signed verdicts ("adopt", "reject" or None). Nodes recompute it.
    gate_round: int | None = None
    gate_decision: str | None = None

    def __post_init__(self) -> None:
        if self.state not in ROUND_STATES:
            raise ProtocolError("state", f"must be one of {', '.join(ROUND_STATES)}")
        if self.kind not in ROUND_KINDS:
            raise ProtocolError("kind", f"must be one of {', '.join(ROUND_KINDS)}")

    @staticmethod
    def _from_wire(data: Mapping[str, Any]) -> Mapping[str, Any]:
        return {**data, "manifest": None} if data.get("manifest") == {} else data

    @classmethod
    def from_dict(cls, data: object) -> RoundInfo:
        return decode(cls, data)

    def to_dict(self) -> dict[str, Any]:
        data = encode(self)
        data["manifest"] = self.manifest.to_dict() if self.manifest is not None else {}
        return data

    @property
    def is_training(self) -> bool:
        return self.kind == "training"

    @property
    def is_evaluation(self) -> bool:
        return self.kind == "evaluation"

    @property
    def is_sketch(self) -> bool:
        return self.kind == "sketch"


@dataclass(frozen=True)
class PrivacyClaim:
    """What a bank reports about its DP budget with an upload (``X-Privacy-*`` headers)."""

    epsilon: float | None = None
    budget_left: bool | None = None

    def headers(self) -> dict[str, str]:
        """The upload headers that carry this claim (none for an empty claim)."""
        out: dict[str, str] = {}
        if self.epsilon is not None:
            out["X-Privacy-Epsilon"] = repr(float(self.epsilon))
        if self.budget_left is not None:
            out["X-Privacy-Budget-Left"] = "true" if self.budget_left else "false"
        return out


@dataclass(frozen=True)
class UpdateReceipt:
    """The portal's answer to an accepted upload (the same for an idempotent retry)."""

    round: int
    bank: str
    digest: str
    size_bytes: int
    received_at: datetime

    @classmethod
    def from_dict(cls, data: object) -> UpdateReceipt:
        return decode(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return encode(self)


@dataclass(frozen=True)
class MetricsReceipt:
    """The portal's answer to a metrics report."""

    round: int
    metrics: dict[str, Any]
    self_reported: bool

    @classmethod
    def from_dict(cls, data: object) -> MetricsReceipt:
        return decode(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return encode(self)


@dataclass(frozen=True)
class RoundPage:
    """One page of ``GET /rounds/``."""

    count: int
    next: str | None
    previous: str | None
    results: tuple[RoundInfo, ...]

    @classmethod
    def from_dict(cls, data: object) -> RoundPage:
        return decode(cls, data)

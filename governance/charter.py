"""The roster's data model: members, the approval rule, the privacy floor and the charter."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from governance.encoding import (
    MIN_BANKS_FLOOR,
    MIN_BANKS_FLOOR_TEXT,
    ZERO_HASH,
    check_hex64,
    check_int,
    check_positive_float,
    check_raw_key,
    check_slug,
    check_text,
    read_bool,
    read_list,
    read_object,
)
from governance.errors import RosterError


class MemberStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


@dataclass(frozen=True)
class Member:
    """A bank of the consortium with the keys the other banks have approved for it."""

    bank_id: str
    name: str
    signing_key: str
    agreement_key: str
    status: MemberStatus = MemberStatus.ACTIVE

    def __post_init__(self) -> None:
        check_slug(self.bank_id, "member.bank_id")
        check_text(self.name, f"member {self.bank_id!r}.name")
        check_raw_key(self.signing_key, f"member {self.bank_id!r}.signing_key", agreement=False)
        check_raw_key(self.agreement_key, f"member {self.bank_id!r}.agreement_key", agreement=True)
        if self.status not in set(MemberStatus):
            raise RosterError(
                f"member {self.bank_id!r}.status must be one of active, suspended, revoked",
                code="bad_field",
            )
        object.__setattr__(self, "status", MemberStatus(self.status))

    @property
    def is_active(self) -> bool:
        return self.status is MemberStatus.ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return {
            "bank_id": self.bank_id,
            "name": self.name,
            "signing_key": self.signing_key,
            "agreement_key": self.agreement_key,
            "status": str(self.status),
        }

    @classmethod
    def from_dict(cls, data: object) -> Member:
        d = read_object(
            data, "member", {"bank_id", "name", "signing_key", "agreement_key", "status"}
        )
        return cls(d["bank_id"], d["name"], d["signing_key"], d["agreement_key"], d["status"])


@dataclass(frozen=True)
class Rule:
    """How many active members must approve a change: ceil(num/den * active), at least k_min.

    A fraction scales with membership (2/3 of 4 banks is 3, of 7 banks 5) where a fixed k
    would drift towards "anyone" as the consortium grows. The fraction must be a strict
    majority, so two disjoint groups of banks can never both approve conflicting versions,
    and ``k_min >= 2`` so no single bank ever acts alone while others exist. The count is
    capped at the number of banks able to approve, so a shrunken consortium is never stuck.
    """

    threshold_numerator: int
    threshold_denominator: int
    k_min: int

    def __post_init__(self) -> None:
        check_int(self.threshold_denominator, "rule.threshold_denominator", minimum=1)
        check_int(self.threshold_numerator, "rule.threshold_numerator", minimum=1)
        check_int(self.k_min, "rule.k_min", minimum=2)
        if self.threshold_numerator > self.threshold_denominator:
            raise RosterError(
                "rule: threshold_numerator must not exceed threshold_denominator",
                code="bad_field",
            )
        if 2 * self.threshold_numerator <= self.threshold_denominator:
            raise RosterError(
                "rule: the threshold must be a strict majority (numerator/denominator > 1/2)",
                code="bad_field",
            )

    def required(self, active: int) -> int:
        """Approvals needed when ``active`` members are active (integer ceil, no floats)."""
        share = -(-self.threshold_numerator * active // self.threshold_denominator)
        return min(active, max(self.k_min, share))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> Rule:
        names = {"threshold_numerator", "threshold_denominator", "k_min"}
        d = read_object(data, "rule", names)
        return cls(d["threshold_numerator"], d["threshold_denominator"], d["k_min"])

    def __str__(self) -> str:
        num, den = self.threshold_numerator, self.threshold_denominator
        return f"{num}/{den} of active members (at least {self.k_min})"


@dataclass(frozen=True)
class PrivacyFloor:
    """What every round policy must respect: DP required or not, and the epsilon ceiling."""

    dp_required: bool
    epsilon_ceiling: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.dp_required, bool):
            raise RosterError("privacy.dp_required must be true or false", code="bad_field")
        if self.epsilon_ceiling is not None:
            ceiling = check_positive_float(self.epsilon_ceiling, "privacy.epsilon_ceiling")
            object.__setattr__(self, "epsilon_ceiling", ceiling)

    def to_dict(self) -> dict[str, Any]:
        return {"dp_required": self.dp_required, "epsilon_ceiling": self.epsilon_ceiling}

    @classmethod
    def from_dict(cls, data: object) -> PrivacyFloor:
        d = read_object(data, "privacy", {"dp_required", "epsilon_ceiling"})
        return cls(read_bool(d, "dp_required", "privacy"), d["epsilon_ceiling"])

    def __str__(self) -> str:
        dp = "DP required" if self.dp_required else "DP optional"
        ceiling = (
            "no epsilon ceiling" if self.epsilon_ceiling is None else f"ε ≤ {self.epsilon_ceiling}"
        )
        return f"{dp}, {ceiling}"


@dataclass(frozen=True)
class PolicyApproval:
    """A round policy version the banks approved, pinned by its canonical snapshot's SHA-256."""

    name: str
    version: int
    digest: str

    def __post_init__(self) -> None:
        check_text(self.name, "policy.name")
        if len(self.name) > 100:
            raise RosterError("policy.name must be at most 100 characters", code="bad_field")
        check_int(self.version, "policy.version", minimum=1)
        check_hex64(self.digest, "policy.digest")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> PolicyApproval:
        d = read_object(data, "policy", {"name", "version", "digest"})
        return cls(d["name"], d["version"], d["digest"])


def _unique(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise RosterError(f"charter: {what} {value!r} appears twice", code="bad_field")
        seen.add(value)


@dataclass(frozen=True)
class Charter:
    """Everything the banks agreed on: who is in, with which keys, under which rules."""

    consortium_id: str
    members: tuple[Member, ...]
    rule: Rule
    min_banks: int
    key_epochs: tuple[str, ...]
    privacy: PrivacyFloor
    policies: tuple[PolicyApproval, ...] = ()

    def __post_init__(self) -> None:
        check_slug(self.consortium_id, "consortium_id")
        object.__setattr__(self, "members", tuple(self.members))
        object.__setattr__(self, "key_epochs", tuple(self.key_epochs))
        object.__setattr__(self, "policies", tuple(self.policies))
        check_int(self.min_banks, "min_banks", minimum=0)
        if self.min_banks < MIN_BANKS_FLOOR:
            raise RosterError(
                f"min_banks must be at least {MIN_BANKS_FLOOR} (got {self.min_banks}): "
                + MIN_BANKS_FLOOR_TEXT,
                code="bad_field",
            )
        for epoch in self.key_epochs:
            check_hex64(epoch, "key_epochs[]")
        _unique([m.bank_id for m in self.members], "bank id")
        _unique([m.signing_key for m in self.members], "signing key")
        _unique([m.agreement_key for m in self.members], "agreement key")
        _unique(list(self.key_epochs), "key epoch")
        _unique([f"{p.name} v{p.version}" for p in self.policies], "policy")

    def member(self, bank_id: str) -> Member | None:
        return next((m for m in self.members if m.bank_id == bank_id), None)

    def active_members(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.is_active)

    def signing_key_of(self, bank_id: str) -> str | None:
        """The roster signing key of an *active* member; None for anyone else."""
        member = self.member(bank_id)
        return member.signing_key if member is not None and member.is_active else None

    def is_policy_approved(self, name: str, version: int, digest: str) -> bool:
        return any((p.name, p.version, p.digest) == (name, version, digest) for p in self.policies)

    def key_epoch_in_force(self, fingerprint: str) -> bool:
        return fingerprint in self.key_epochs

    def to_dict(self) -> dict[str, Any]:
        return {
            "consortium_id": self.consortium_id,
            "members": [m.to_dict() for m in self.members],
            "rule": self.rule.to_dict(),
            "min_banks": self.min_banks,
            "key_epochs": list(self.key_epochs),
            "privacy": self.privacy.to_dict(),
            "policies": [p.to_dict() for p in self.policies],
        }

    @classmethod
    def fields_from_dict(cls, d: Mapping[str, Any], where: str) -> dict[str, Any]:
        return {
            "consortium_id": d["consortium_id"],
            "members": tuple(Member.from_dict(m) for m in read_list(d, "members", where)),
            "rule": Rule.from_dict(d["rule"]),
            "min_banks": d["min_banks"],
            "key_epochs": tuple(read_list(d, "key_epochs", where)),
            "privacy": PrivacyFloor.from_dict(d["privacy"]),
            "policies": tuple(PolicyApproval.from_dict(p) for p in read_list(d, "policies", where)),
        }

    @classmethod
    def from_dict(cls, data: object) -> Charter:
        names = {f.name for f in dataclasses.fields(Charter)}
        return Charter(**cls.fields_from_dict(read_object(data, "charter", names), "charter"))


@dataclass(frozen=True)
class RosterState(Charter):
    """A charter as verified up to roster version ``version``, whose hash is ``head_hash``."""

    version: int = 0
    head_hash: str = ZERO_HASH

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.version, "version", minimum=0)
        check_hex64(self.head_hash, "head_hash")

    def charter(self) -> Charter:
        """The agreed content alone, without the position in the chain."""
        names = {f.name for f in dataclasses.fields(Charter)}
        return Charter(**{name: getattr(self, name) for name in names})

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "version": self.version, "head_hash": self.head_hash}

    @classmethod
    def from_dict(cls, data: object) -> RosterState:
        names = {f.name for f in dataclasses.fields(RosterState)}
        d = read_object(data, "roster state", names)
        fields = Charter.fields_from_dict(d, "roster state")
        return RosterState(**fields, version=d["version"], head_hash=d["head_hash"])

"""The changes a roster version can carry: a tagged union, each kind with its own fields."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from governance.charter import (
    Charter,
    Member,
    MemberStatus,
    PolicyApproval,
    PrivacyFloor,
    Rule,
)
from governance.encoding import (
    MIN_BANKS_FLOOR,
    MIN_BANKS_FLOOR_TEXT,
    check_hex64,
    check_int,
    check_raw_key,
    check_slug,
    check_text,
    read_object,
)
from governance.errors import RosterError


@dataclass(frozen=True)
class Genesis:
    """Version 0: the founding charter itself, signed by every founding member."""

    kind: ClassVar[str] = "genesis"
    charter: Charter

    def fields(self) -> dict[str, Any]:
        return {"charter": self.charter.to_dict()}

    @classmethod
    def from_fields(cls, d: dict[str, Any]) -> Genesis:
        return cls(Charter.from_dict(d["charter"]))


@dataclass(frozen=True)
class AdmitBank:
    """Admit a new member; it must sign too, under the signing key it declares."""

    kind: ClassVar[str] = "admit_bank"
    member: Member

    def __post_init__(self) -> None:
        if self.member.status is not MemberStatus.ACTIVE:
            raise RosterError("admit_bank: member.status must be active", code="bad_field")

    def fields(self) -> dict[str, Any]:
        return {"member": self.member.to_dict()}

    @classmethod
    def from_fields(cls, d: dict[str, Any]) -> AdmitBank:
        return cls(Member.from_dict(d["member"]))


@dataclass(frozen=True)
class _BankAction:
    """A change about one existing member, with a reason for the record."""

    kind: ClassVar[str] = ""
    bank_id: str
    reason: str = ""

    def __post_init__(self) -> None:
        check_slug(self.bank_id, f"{self.kind}.bank_id")
        check_text(self.reason, f"{self.kind}.reason", allow_empty=True)

    def fields(self) -> dict[str, Any]:
        return {"bank_id": self.bank_id, "reason": self.reason}

    @classmethod
    def from_fields(cls, d: dict[str, Any]) -> Any:
        return cls(d["bank_id"], d["reason"])


@dataclass(frozen=True)
class SuspendBank(_BankAction):
    kind: ClassVar[str] = "suspend_bank"


@dataclass(frozen=True)
class ReinstateBank(_BankAction):
    kind: ClassVar[str] = "reinstate_bank"


@dataclass(frozen=True)
class RevokeBank(_BankAction):
    kind: ClassVar[str] = "revoke_bank"


@dataclass(frozen=True)
class RotateBankKeys:
    """Replace a member's signing and/or key-agreement key; it signs under the new key."""

    kind: ClassVar[str] = "rotate_bank_keys"
    bank_id: str
    signing_key: str | None = None
    agreement_key: str | None = None

    def __post_init__(self) -> None:
        check_slug(self.bank_id, "rotate_bank_keys.bank_id")
        if self.signing_key is None and self.agreement_key is None:
            raise RosterError(
                "rotate_bank_keys: give a new signing_key, agreement_key or both", code="bad_field"
            )
        if self.signing_key is not None:
            check_raw_key(self.signing_key, "rotate_bank_keys.signing_key", agreement=False)
        if self.agreement_key is not None:
            check_raw_key(self.agreement_key, "rotate_bank_keys.agreement_key", agreement=True)

    def fields(self) -> dict[str, Any]:
        return {
            "bank_id": self.bank_id,
            "signing_key": self.signing_key,
            "agreement_key": self.agreement_key,
        }

    @classmethod
    def from_fields(cls, d: dict[str, Any]) -> RotateBankKeys:
        return cls(d["bank_id"], d["signing_key"], d["agreement_key"])


@dataclass(frozen=True)
class _EpochAction:
    kind: ClassVar[str] = ""
    fingerprint: str

    def __post_init__(self) -> None:
        check_hex64(self.fingerprint, f"{self.kind}.fingerprint")

    def fields(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint}

    @classmethod
    def from_fields(cls, d: dict[str, Any]) -> Any:
        return cls(d["fingerprint"])


@dataclass(frozen=True)
class RegisterKeyEpoch(_EpochAction):
    """Put a CKKS key epoch (the SHA-256 of its public context) in force."""

    kind: ClassVar[str] = "register_key_epoch"


@dataclass(frozen=True)
class RetireKeyEpoch(_EpochAction):
    """Take a key epoch out of force: rounds under it are refused from then on."""

    kind: ClassVar[str] = "retire_key_epoch"


@dataclass(frozen=True)
class ChangeRule:
    kind: ClassVar[str] = "change_rule"
    rule: Rule

    def fields(self) -> dict[str, Any]:
        return {"rule": self.rule.to_dict()}

    @classmethod
    def from_fields(cls, d: dict[str, Any]) -> ChangeRule:
        return cls(Rule.from_dict(d["rule"]))


@dataclass(frozen=True)
class ChangeMinBanks:
    kind: ClassVar[str] = "change_min_banks"
    min_banks: int

    def __post_init__(self) -> None:
        check_int(self.min_banks, "change_min_banks.min_banks", minimum=0)
        if self.min_banks < MIN_BANKS_FLOOR:
            raise RosterError(
                f"change_min_banks.min_banks must be at least {MIN_BANKS_FLOOR} "
                f"(got {self.min_banks}): {MIN_BANKS_FLOOR_TEXT}",
                code="bad_field",
            )

    def fields(self) -> dict[str, Any]:
        return {"min_banks": self.min_banks}

    @classmethod
    def from_fields(cls, d: dict[str, Any]) -> ChangeMinBanks:
        return cls(d["min_banks"])


@dataclass(frozen=True)
class ChangePrivacyFloor:
    kind: ClassVar[str] = "change_privacy_floor"
    privacy: PrivacyFloor

    def fields(self) -> dict[str, Any]:
        return {"privacy": self.privacy.to_dict()}

    @classmethod
    def from_fields(cls, d: dict[str, Any]) -> ChangePrivacyFloor:
        return cls(PrivacyFloor.from_dict(d["privacy"]))


@dataclass(frozen=True)
class ApprovePolicy:
    """Approve one round-policy version, pinned by the digest of its canonical snapshot."""

    kind: ClassVar[str] = "approve_policy"
    policy: PolicyApproval

    def fields(self) -> dict[str, Any]:
        return {"policy": self.policy.to_dict()}

    @classmethod
    def from_fields(cls, d: dict[str, Any]) -> ApprovePolicy:
        return cls(PolicyApproval.from_dict(d["policy"]))


Change = (
    Genesis
    | AdmitBank
    | SuspendBank
    | ReinstateBank
    | RevokeBank
    | RotateBankKeys
    | RegisterKeyEpoch
    | RetireKeyEpoch
    | ChangeRule
    | ChangeMinBanks
    | ChangePrivacyFloor
    | ApprovePolicy
)

CHANGE_KINDS: dict[str, type[Any]] = {
    cls.kind: cls
    for cls in (
        Genesis,
        AdmitBank,
        SuspendBank,
        ReinstateBank,
        RevokeBank,
        RotateBankKeys,
        RegisterKeyEpoch,
        RetireKeyEpoch,
        ChangeRule,
        ChangeMinBanks,
        ChangePrivacyFloor,
        ApprovePolicy,
    )
}


def change_to_dict(change: Change) -> dict[str, Any]:
    return {"kind": change.kind, **change.fields()}


def change_from_dict(data: object) -> Change:
    """Parse a change, refusing an unknown kind and any missing or unexpected field."""
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        raise RosterError("change must be a JSON object with a string 'kind'", code="bad_field")
    cls = CHANGE_KINDS.get(data["kind"])
    if cls is None:
        known = ", ".join(sorted(CHANGE_KINDS))
        raise RosterError(
            f"change.kind {data['kind']!r} is unknown; known: {known}", code="bad_field"
        )
    names = {f.name for f in dataclasses.fields(cls)} | {"kind"}
    d = dict(read_object(data, f"change ({cls.kind})", names))
    change: Change = cls.from_fields(d)
    return change


def subject_of(change: Change) -> str | None:
    """The bank a change is about; it never approves a change about itself."""
    if isinstance(change, AdmitBank):
        return change.member.bank_id
    if isinstance(change, SuspendBank | ReinstateBank | RevokeBank | RotateBankKeys):
        return change.bank_id
    return None

"""Signed objections: a node's refusal of a round, in a form anyone can check later."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.encoding import (
    canonical_json,
    check_int,
    check_slug,
    check_text,
    check_timestamp,
    read_object,
    strict_json_loads,
)
from governance.errors import RosterError
from he.signing import sign, verify

OBJECTION_DOMAIN = b"consortium-objection-v1\n"
REASON_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class Objection:
    """A bank's statement that it refuses round ``round_number``, and why."""

    consortium_id: str
    round_number: int
    bank_id: str
    reason_code: str
    message: str
    created_at: str

    def __post_init__(self) -> None:
        check_slug(self.consortium_id, "objection.consortium_id")
        check_int(self.round_number, "objection.round_number", minimum=0)
        check_slug(self.bank_id, "objection.bank_id")
        if not isinstance(self.reason_code, str) or not REASON_CODE.fullmatch(self.reason_code):
            raise RosterError(
                "objection.reason_code must be lowercase letters, digits and '_' "
                f"(at most 64), got {self.reason_code!r}",
                code="bad_field",
            )
        check_text(self.message, "objection.message")
        check_timestamp(self.created_at, "objection.created_at")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> Objection:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**read_object(data, "objection", names))

    @classmethod
    def from_json(cls, text: str | bytes) -> Objection:
        return cls.from_dict(strict_json_loads(text))

    def canonical(self) -> bytes:
        return canonical_json(self.to_dict())


def objection_message(objection: Objection) -> bytes:
    """The bytes a bank signs: domain-separated from roster and update signatures."""
    return OBJECTION_DOMAIN + objection.canonical()


def sign_objection(objection: Objection, private_key: Ed25519PrivateKey) -> str:
    return sign(private_key, objection_message(objection))


def verify_objection(objection: Objection, signature: str, public_key: str) -> bool:
    """True when ``signature`` is ``public_key``'s signature of ``objection``; never raises."""
    return verify(public_key, objection_message(objection), signature)

"""Roster versions: the hash-chained, bank-signed records of every change to the charter."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.changes import Change, Genesis, change_from_dict, change_to_dict
from governance.charter import Charter, RosterState
from governance.encoding import (
    ZERO_HASH,
    canonical_json,
    check_hex64,
    check_int,
    check_slug,
    check_timestamp,
    read_object,
    sha256_hex,
    strict_json_loads,
)
from governance.errors import RosterError
from he.signing import sign

ROSTER_DOMAIN = b"consortium-roster-v1\n"


@dataclass(frozen=True)
class RosterVersion:
    """One link of the roster chain; ``signatures`` maps bank id to a base64 Ed25519 signature.

    The signatures are not part of what is hashed or signed: they are collected after the
    version is proposed, and adding one never changes the version's hash.
    """

    consortium_id: str
    number: int
    previous_hash: str
    change: Change
    created_at: str
    signatures: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_slug(self.consortium_id, "consortium_id")
        check_int(self.number, "number", minimum=0)
        check_hex64(self.previous_hash, "previous_hash")
        check_timestamp(self.created_at, "created_at")
        if not isinstance(self.signatures, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.signatures.items()
        ):
            raise RosterError("signatures must map bank ids to base64 strings", code="bad_field")
        object.__setattr__(self, "signatures", dict(self.signatures))

    def body(self) -> dict[str, Any]:
        """Everything that is hashed and signed: the version without its signatures."""
        return {
            "consortium_id": self.consortium_id,
            "number": self.number,
            "previous_hash": self.previous_hash,
            "change": change_to_dict(self.change),
            "created_at": self.created_at,
        }

    def canonical(self) -> bytes:
        return canonical_json(self.body())

    def with_signature(self, bank_id: str, signature: str) -> RosterVersion:
        """A copy with ``bank_id``'s signature added (or replaced)."""
        return dataclasses.replace(self, signatures={**self.signatures, bank_id: signature})

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "signatures": dict(sorted(self.signatures.items()))}

    @classmethod
    def from_dict(cls, data: object) -> RosterVersion:
        names = {"consortium_id", "number", "previous_hash", "change", "created_at", "signatures"}
        d = read_object(data, "roster version", names)
        try:
            return cls(
                d["consortium_id"],
                d["number"],
                d["previous_hash"],
                change_from_dict(d["change"]),
                d["created_at"],
                d["signatures"],
            )
        except RosterError as exc:
            number = d["number"]
            if isinstance(number, int) and not isinstance(number, bool):
                raise exc.at_version(number) from None
            raise


def version_hash(version: RosterVersion) -> str:
    """SHA-256 (hex) of the version's canonical body; the next version links to it."""
    return sha256_hex(version.canonical())


def roster_message(consortium_id: str, vhash: str) -> bytes:
    """The bytes a bank signs: bound to one consortium and one version, never replayable."""
    return ROSTER_DOMAIN + consortium_id.encode() + b"\n" + vhash.encode()


def sign_version(version: RosterVersion, bank_id: str, private_key: Ed25519PrivateKey) -> str:
    """The base64 signature ``bank_id`` gives ``version`` with ``private_key``."""
    check_slug(bank_id, "bank_id")
    return sign(private_key, roster_message(version.consortium_id, version_hash(version)))


def parse_version_json(text: str | bytes) -> RosterVersion:
    """A version from JSON text, refusing duplicate keys (e.g. a bank listed twice)."""
    return RosterVersion.from_dict(strict_json_loads(text))


def genesis_version(charter: Charter, created_at: str) -> RosterVersion:
    """The unsigned version 0 carrying ``charter``, ready for the founders to sign."""
    return RosterVersion(charter.consortium_id, 0, ZERO_HASH, Genesis(charter), created_at)


def next_version(state: RosterState, change: Change, created_at: str) -> RosterVersion:
    """The unsigned version that proposes ``change`` on top of the verified ``state``."""
    return RosterVersion(
        state.consortium_id, state.version + 1, state.head_hash, change, created_at
    )

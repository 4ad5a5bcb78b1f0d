"""Banks and key epochs as the portal describes them to a node."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from protocol.codec import decode, encode


@dataclass(frozen=True)
class BankInfo:
    """A member bank (``GET /banks/me``, and the answer to a signing-key registration)."""

    slug: str
    name: str
    status: str
    signing_public_key: str
    signing_key_registered_at: datetime | None
    created_at: datetime
    status_changed_at: datetime | None

    @classmethod
    def from_dict(cls, data: object) -> BankInfo:
        return decode(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return encode(self)


@dataclass(frozen=True)
class KeyEpochInfo:
    """A consortium key epoch: its fingerprint is what a node compares with its own key."""

    number: int
    fingerprint: str
    ckks_params: dict[str, Any]
    active: bool
    created_at: datetime

    @classmethod
    def from_dict(cls, data: object) -> KeyEpochInfo:
        return decode(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return encode(self)

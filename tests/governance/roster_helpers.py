"""Roster test helpers: four founding banks with real Ed25519/X25519 keys, and signing."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from governance import (
    Change,
    Charter,
    Member,
    PrivacyFloor,
    RosterState,
    RosterVersion,
    Rule,
    genesis_version,
    next_version,
    public_key_b64,
    sign_version,
    verify_genesis,
)

NOW = "2026-12-01T12:00:00+00:00"
EPOCH = "ab" * 32
FOUNDERS = ("alpha", "beta", "gamma", "delta")


def x25519_b64(key: X25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@dataclass
class Bank:
    """A bank as its own node knows it: id, name and the private keys only it holds."""

    bank_id: str
    key: Ed25519PrivateKey
    agreement: X25519PrivateKey

    @property
    def name(self) -> str:
        return f"{self.bank_id.title()} Bank"

    @property
    def public(self) -> str:
        return public_key_b64(self.key)

    def member(self) -> Member:
        return Member(self.bank_id, self.name, self.public, x25519_b64(self.agreement))

    def sign(self, version: RosterVersion) -> RosterVersion:
        return version.with_signature(self.bank_id, sign_version(version, self.bank_id, self.key))


def new_bank(bank_id: str) -> Bank:
    return Bank(bank_id, Ed25519PrivateKey.generate(), X25519PrivateKey.generate())


def signed(version: RosterVersion, *banks: Bank) -> RosterVersion:
    for bank in banks:
        version = bank.sign(version)
    return version


def charter_of(banks: list[Bank], *, consortium_id: str = "acme", min_banks: int = 3) -> Charter:
    return Charter(
        consortium_id=consortium_id,
        members=tuple(b.member() for b in banks),
        rule=Rule(2, 3, 2),
        min_banks=min_banks,
        key_epochs=(EPOCH,),
        privacy=PrivacyFloor(dp_required=True, epsilon_ceiling=8.0),
    )


@dataclass
class Ceremony:
    """The founders, their signed genesis and the state it founds."""

    banks: dict[str, Bank]
    genesis: RosterVersion
    state: RosterState

    def propose(self, change: Change, state: RosterState | None = None) -> RosterVersion:
        return next_version(state or self.state, change, NOW)

    def __getitem__(self, bank_id: str) -> Bank:
        return self.banks[bank_id]


def found() -> Ceremony:
    banks = {bank_id: new_bank(bank_id) for bank_id in FOUNDERS}
    genesis = signed(genesis_version(charter_of(list(banks.values())), NOW), *banks.values())
    return Ceremony(banks, genesis, verify_genesis(genesis))

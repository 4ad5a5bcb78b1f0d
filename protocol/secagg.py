"""Secure aggregation v2 on the wire: mask keys, relayed shares, unmask requests, reveals.

The round protocol of ``docs/secure-aggregation.md`` (SecAgg, Bonawitz et al. CCS 2017, in
its malicious-server form with signatures; SecAgg+, Bell et al. CCS 2020). What each bank
signs is built here, once, for the portal and the node alike:

- ``MaskKeysPost`` (phase *sharing*): a fresh per-round X25519 mask public key, signed with
  the bank's roster Ed25519 key, and one share box per cohort peer (sealed to the peer's
  roster X25519 key with ``he.sharebox``; the portal relays them unread).
- ``CohortKeys`` (phase *open*): every advertised key of the round and the share boxes sealed
  to the caller. The set of banks in it is ``U1``: only they may upload.
- ``UnmaskRequest`` (phase *unmasking*): who survived (uploaded in time) and who dropped.
- ``Reveal``: a survivor's signed answer: shares of each dropped bank's mask key and of each
  survivor's self-mask seed, never both for one bank.
- ``SecAggRecord``: what the manifest of a v2 aggregate adds, so any node can check every
  signature and recompute the correction, and hence the aggregate, itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from protocol.codec import decode, encode
from protocol.errors import ProtocolError

SECURE_AGGREGATION_PROTOCOLS = ("v1", "v2")
DEFAULT_SECURE_AGGREGATION = "v2"

_KEYS_DOMAIN = "consortium-secagg-keys-v2"
_REVEAL_DOMAIN = "consortium-secagg-reveal-v2"


def secagg_threshold(cohort_size: int, min_banks: int) -> int:
    """Shares needed to rebuild a secret: a strict majority of the cohort, at least min_banks.

    A majority means two disjoint sets of survivors can never both reach it, which is what
    stops a malicious portal from asking one half for key shares and the other half for
    seed shares of the same bank (Bonawitz et al., section 6).
    """
    return min(cohort_size, max(min_banks, cohort_size // 2 + 1))


def mask_keys_message(
    consortium: str, round_number: int, bank: str, mask_public_key: str, seed_commitment: str
) -> bytes:
    """What a bank signs to advertise its mask key (and commit to its self-mask seed)."""
    parts = [_KEYS_DOMAIN, consortium, str(round_number), bank, mask_public_key, seed_commitment]
    if any("\n" in p for p in parts):
        raise ProtocolError("bank", "may not contain a newline")
    return "\n".join(parts).encode()


@dataclass(frozen=True)
class AdvertisedKey:
    """A bank's mask public key for a round (base64 raw X25519), the hex commitment to its
    self-mask seed (``he.recovery.seed_commitment``), and its signature over both."""

    bank: str
    mask_public_key: str
    seed_commitment: str
    signature: str

    def message(self, consortium: str, round_number: int) -> bytes:
        return mask_keys_message(
            consortium, round_number, self.bank, self.mask_public_key, self.seed_commitment
        )


@dataclass(frozen=True)
class MaskKeysPost:
    """What a bank sends in the sharing phase (``PUT rounds/{n}/mask-keys``).

    ``shares`` maps every other cohort bank's slug to the base64 share box sealed to it.
    """

    mask_public_key: str
    seed_commitment: str
    signature: str
    shares: dict[str, Any]

    def __post_init__(self) -> None:
        for recipient, box in self.shares.items():
            if not isinstance(box, str):
                raise ProtocolError(f"shares.{recipient}", "expected a base64 string")

    @classmethod
    def from_dict(cls, data: object) -> MaskKeysPost:
        return decode(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return encode(self)


@dataclass(frozen=True)
class CohortKeys:
    """``GET rounds/{n}/mask-keys``: the advertised keys and the shares sealed to the caller.

    ``final`` is true once the sharing phase has closed: ``keys`` is then ``U1``.
    """

    round: int
    threshold: int
    cohort: tuple[str, ...]
    keys: tuple[AdvertisedKey, ...]
    shares_for_you: dict[str, Any]
    final: bool

    @classmethod
    def from_dict(cls, data: object) -> CohortKeys:
        return decode(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return encode(self)

    @property
    def banks(self) -> tuple[str, ...]:
        return tuple(k.bank for k in self.keys)


@dataclass(frozen=True)
class UnmaskRequest:
    """``GET rounds/{n}/unmask``: the survivors (uploaded in time) and the dropped banks."""

    round: int
    threshold: int
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]

    @classmethod
    def from_dict(cls, data: object) -> UnmaskRequest:
        return decode(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return encode(self)


@dataclass(frozen=True)
class Reveal:
    """A survivor's signed shares (``POST rounds/{n}/reveal``; kept in the manifest).

    ``key_shares``: dropped bank -> base64 share of its round mask key.
    ``seed_shares``: surviving bank -> base64 share of its self-mask seed.
    """

    bank: str
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
    key_shares: dict[str, Any]
    seed_shares: dict[str, Any]
    signature: str = ""

    def __post_init__(self) -> None:
        for name in ("key_shares", "seed_shares"):
            for owner, share in getattr(self, name).items():
                if not isinstance(share, str):
                    raise ProtocolError(f"{name}.{owner}", "expected a base64 string")

    def message(self, consortium: str, round_number: int) -> bytes:
        """What the survivor signs: everything it reveals and the request it answers."""
        body = {
            "consortium": consortium,
            "round": round_number,
            "bank": self.bank,
            "survivors": sorted(self.survivors),
            "dropped": sorted(self.dropped),
            "key_shares": self.key_shares,
            "seed_shares": self.seed_shares,
        }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return f"{_REVEAL_DOMAIN}\n{text}".encode()

    @classmethod
    def from_dict(cls, data: object) -> Reveal:
        return decode(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return encode(self)


@dataclass(frozen=True)
class SecAggRecord:
    """The secure-aggregation evidence a v2 manifest carries.

    ``keys`` is ``U1`` (who advertised a mask key), ``survivors`` the banks whose uploads are
    summed (the manifest's inputs), ``dropped`` = ``U1`` minus survivors, and ``reveals`` at
    least ``threshold`` signed reveals that all answer this same (survivors, dropped) request.
    """

    consortium: str
    threshold: int
    cohort: tuple[str, ...]
    keys: tuple[AdvertisedKey, ...]
    survivors: tuple[str, ...]
    dropped: tuple[str, ...]
    reveals: tuple[Reveal, ...] = field(default=())

    @classmethod
    def from_dict(cls, data: object) -> SecAggRecord:
        return decode(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return encode(self)

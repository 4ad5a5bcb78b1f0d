"""Dropout recovery: deal a bank's round secrets as shares, rebuild them, cancel their masks.

Following Bonawitz et al. (CCS 2017) and Bell et al. (CCS 2020): at round start each bank
Shamir-shares (``he/shamir.py``) its X25519 agreement secret key and its self-mask seed
among the cohort, each share sealed to its recipient (``he/sharebox.py``). After the
deadline, for every *dropped* bank the survivors reveal shares of its agreement key, which
rebuilds the pairwise seeds it shared with each survivor; for every *surviving* bank they
reveal shares of its self-mask seed. Never both for one bank: with both, a late upload of a
bank declared dropped could be unmasked, so :func:`check_reveal` refuses that request.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from he.errors import HEError
from he.masking import SEED_BYTES, MaskTerm, RoundBinding, pair_sign, pairwise_seed, public_bytes
from he.shamir import SHARE_BYTES, Share, combine, split

_SHARE_WIRE = 2 + SHARE_BYTES
_COMMIT_DOMAIN = b"consortium-secagg-seed-commitment-v2"


@dataclass(frozen=True)
class RoundSecrets:
    """What a bank shares at round start: its agreement key and its self-mask seed."""

    agreement: X25519PrivateKey
    self_seed: bytes

    def self_term(self, own_id: str) -> MaskTerm:
        """The self-mask the bank adds to its own upload."""
        return MaskTerm(own_id, self.self_seed, 1)


def seed_commitment(seed: bytes, binding: RoundBinding, bank: str) -> str:
    """Hex SHA-256 commitment to a self-mask seed, signed with the bank's mask key.

    The seed is 32 uniform bytes, so the hash hides it; after the reveal, anyone checks the
    rebuilt seed against it, so a survivor who reveals a wrong share is caught instead of
    silently corrupting the aggregate.
    """
    digest = hashlib.sha256(binding.info(_COMMIT_DOMAIN, bank) + b"\n" + seed)
    return digest.hexdigest()


def check_self_seed(seed: bytes, commitment: str, binding: RoundBinding, bank: str) -> bytes:
    """``seed`` if it matches the bank's signed commitment; HEError otherwise."""
    if not hmac.compare_digest(seed_commitment(seed, binding, bank), commitment):
        raise HEError(f"the revealed shares do not rebuild {bank}'s committed self-mask seed")
    return seed


def deal_shares(secrets: RoundSecrets, holders: Sequence[str], threshold: int) -> dict[str, bytes]:
    """One payload per holder (its key share then its seed share), to be sealed to it."""
    raw_key = secrets.agreement.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    key_shares = split(raw_key, threshold, len(holders))
    seed_shares = split(secrets.self_seed, threshold, len(holders))
    return {
        holder: k.to_bytes() + s.to_bytes()
        for holder, k, s in zip(holders, key_shares, seed_shares, strict=True)
    }


def key_share(payload: bytes) -> Share:
    """The agreement-key share in a payload (revealed only for a dropped bank)."""
    return Share.from_bytes(_check_payload(payload)[:_SHARE_WIRE])


def seed_share(payload: bytes) -> Share:
    """The self-seed share in a payload (revealed only for a surviving bank)."""
    return Share.from_bytes(_check_payload(payload)[_SHARE_WIRE:])


def _check_payload(payload: bytes) -> bytes:
    if len(payload) != 2 * _SHARE_WIRE:
        raise HEError(f"a share payload is {2 * _SHARE_WIRE} bytes, got {len(payload)}")
    return payload


def recover_agreement_key(shares: Sequence[Share], expected_public: bytes) -> X25519PrivateKey:
    """Rebuild a dropped bank's agreement key; refuse it unless it matches the roster's key."""
    key = X25519PrivateKey.from_private_bytes(combine(shares, 32))
    if public_bytes(key) != expected_public:
        raise HEError("the revealed shares do not rebuild the bank's agreement key")
    return key


def recover_self_seed(shares: Sequence[Share]) -> bytes:
    """Rebuild a surviving bank's self-mask seed."""
    return combine(shares, SEED_BYTES)


def check_reveal(dropped: Iterable[str], survivors: Iterable[str]) -> None:
    """Refuse a reveal request that names a bank as both dropped and surviving."""
    both = set(dropped) & set(survivors)
    if both:
        raise HEError(
            f"refusing to reveal both the agreement key and the self-mask of {sorted(both)}: "
            "that would unmask its update"
        )


def dropout_terms(
    dropped_id: str,
    dropped_key: X25519PrivateKey,
    survivors: dict[str, X25519PublicKey],
    binding: RoundBinding,
) -> list[MaskTerm]:
    """Terms that cancel the masks the survivors added towards ``dropped_id``."""
    return [
        MaskTerm(
            survivor,
            pairwise_seed(dropped_key, dropped_id, public, survivor, binding),
            -pair_sign(survivor, dropped_id),
        )
        for survivor, public in sorted(survivors.items())
    ]


def self_mask_terms(seeds: dict[str, bytes]) -> list[MaskTerm]:
    """Terms that cancel the survivors' self-masks."""
    return [MaskTerm(bank, seed, -1) for bank, seed in sorted(seeds.items())]

"""Dropout recovery: deal a bank's round secrets as shares, rebuild them, cancel their masks.

Following Bonawitz et al. (CCS 2017) and Bell et al. (CCS 2020): at round start each bank
Shamir-shares (``he/shamir.py``) its X25519 agreement secret key and its self-mask seed
among the cohort, each share sealed to its recipient (``he/sharebox.py``). After the
deadline, for every *dropped* bank the survivors reveal shares of its agreement key, which
rebuilds the pairwise seeds it shared with each survivor; for every *surviving* bank they
reveal shares of its self-mask seed. Never both for one bank: with both, a late upload of a
bank declared dropped could be unmasked, so :func:`check_reveal` refuses that request.
:func:`rebuild_correction` turns the reveals into the terms that cancel those masks: the
one rebuild the portal runs before it publishes and a node runs to recompute the sum.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations, islice
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from he.errors import HEError
from he.masking import SEED_BYTES, MaskTerm, RoundBinding, pair_sign, pairwise_seed, public_bytes
from he.shamir import SHARE_BYTES, Share, combine, split

_SHARE_WIRE = 2 + SHARE_BYTES
_COMMIT_DOMAIN = b"consortium-secagg-seed-commitment-v2"
MASK_KEY = "round mask key"
SELF_SEED = "self-mask seed"

T = TypeVar("T")
Blame = dict[str, list[str]]  # revealer -> what its shares failed to rebuild


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


# --- rebuilding the correction from the reveals ---------------------------------------------


class RecoveryFailed(HEError):
    """A revealed secret cannot be rebuilt: ``owner``'s ``secret`` (MASK_KEY or SELF_SEED)."""

    def __init__(self, message: str, owner: str, secret: str) -> None:
        super().__init__(message)
        self.owner = owner
        self.secret = secret


@dataclass(frozen=True)
class Advertised:
    """What a bank advertised for the round: its raw X25519 mask key, its seed commitment."""

    public: bytes
    commitment: str


@dataclass(frozen=True)
class Revealed:
    """One survivor's signed answer to the unmask request: base64 shares by secret owner."""

    revealer: str
    key_shares: Mapping[str, str | None]  # dropped bank -> share of its round mask key
    seed_shares: Mapping[str, str | None]  # survivor -> share of its self-mask seed


@dataclass
class Correction:
    """The terms that cancel the dropped banks' pair masks and the survivors' self-masks.

    ``blame`` names the revealers whose shares were unreadable or disagree with the
    checked secrets; the correction holds as long as ``threshold`` others agreed.
    """

    terms: list[MaskTerm]
    blame: Blame = field(default_factory=dict)


def rebuild_correction(
    *,
    advertised: Mapping[str, Advertised],
    survivors: Sequence[str],
    dropped: Sequence[str],
    reveals: Sequence[Revealed],
    threshold: int,
    binding: RoundBinding,
    max_subsets: int,
) -> Correction:
    """``-(dropped banks' pair masks towards the survivors) - (survivors' self-masks)``.

    Each secret is rebuilt from some ``threshold`` of the revealed shares and checked: a
    mask key against the public key its bank advertised, a seed against its commitment.
    Fewer than a threshold of *correct* shares rebuild a wrong value, not an error, so
    when the first subset fails others are tried (at most ``max_subsets``: it bounds the
    work wrong shares can cause). RecoveryFailed when a secret cannot be rebuilt, HEError
    when a bank named advertised no usable mask key.
    """
    rebuild = _Rebuilder(threshold, max_subsets)
    survivor_keys = {s: _public(s, _of(advertised, s)) for s in sorted(survivors)}
    terms: list[MaskTerm] = []
    for bank in sorted(dropped):
        shares = {r.revealer: r.key_shares.get(bank) for r in reveals}
        key = rebuild(bank, MASK_KEY, shares, _key_check(_of(advertised, bank).public))
        terms += dropout_terms(bank, key, survivor_keys, binding)
    seeds = {}
    for bank in sorted(survivors):
        shares = {r.revealer: r.seed_shares.get(bank) for r in reveals}
        check = _seed_check(_of(advertised, bank).commitment, binding, bank)
        seeds[bank] = rebuild(bank, SELF_SEED, shares, check)
    return Correction(terms + self_mask_terms(seeds), rebuild.blame)


def _of(advertised: Mapping[str, Advertised], bank: str) -> Advertised:
    if bank not in advertised:
        raise HEError(f"{bank} advertised no mask key for this round")
    return advertised[bank]


def _public(bank: str, key: Advertised) -> X25519PublicKey:
    try:
        return X25519PublicKey.from_public_bytes(key.public)
    except ValueError:
        raise HEError(f"{bank}'s advertised mask key is not an X25519 public key") from None


Check = Callable[[list[Share]], T]


def _key_check(expected_public: bytes) -> Check[X25519PrivateKey]:
    return lambda shares: recover_agreement_key(shares, expected_public)


def _seed_check(commitment: str, binding: RoundBinding, bank: str) -> Check[bytes]:
    return lambda shares: check_self_seed(recover_self_seed(shares), commitment, binding, bank)


class _Rebuilder:
    """Rebuilds checked secrets from revealed shares, and collects whom to blame."""

    def __init__(self, threshold: int, max_subsets: int) -> None:
        self.threshold = threshold
        self.max_subsets = max_subsets
        self.blame: Blame = {}

    def __call__(
        self, owner: str, secret: str, texts: Mapping[str, str | None], check: Check[T]
    ) -> T:
        """The checked secret from some ``threshold`` of the shares; blames those that disagree."""
        shares = self._parse(texts, f"{owner}'s {secret}")
        names = sorted(shares)
        if len(names) < self.threshold:
            raise RecoveryFailed(
                f"{owner}'s {secret} cannot be rebuilt: {len(names)} usable shares of the "
                f"{self.threshold} needed{self._blamed(texts)}",
                owner,
                secret,
            )
        for subset in islice(combinations(names, self.threshold), self.max_subsets):
            value = _attempt(check, [shares[n] for n in subset])
            if value is None:
                continue
            others = [shares[n] for n in subset[1:]]
            for name in names:
                if name not in subset and _attempt(check, [shares[name], *others]) is None:
                    self.blame.setdefault(name, []).append(f"a wrong share of {owner}'s {secret}")
            return value
        raise RecoveryFailed(
            f"no {self.threshold} of the shares revealed by {', '.join(names)} rebuild "
            f"{owner}'s {secret} (checked against what {owner} advertised): at least one of "
            "them revealed a wrong share",
            owner,
            secret,
        )

    def _parse(self, texts: Mapping[str, str | None], what: str) -> dict[str, Share]:
        shares = {}
        for revealer, text in sorted(texts.items()):
            try:
                shares[revealer] = Share.from_bytes(base64.b64decode(text or "", validate=True))
            except (ValueError, TypeError, HEError):
                self.blame.setdefault(revealer, []).append(f"no readable share of {what}")
        return shares

    def _blamed(self, among: Iterable[str]) -> str:
        named = sorted(set(self.blame) & set(among))
        return f" (unusable from {', '.join(named)})" if named else ""


def _attempt(check: Check[T], shares: list[Share]) -> T | None:
    try:
        return check(shares)
    except HEError:
        return None

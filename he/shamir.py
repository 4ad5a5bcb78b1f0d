"""Shamir t-of-n secret sharing of 16- or 32-byte seeds over the prime field GF(2^521 - 1).

Used as in Bonawitz et al. (CCS 2017, "Practical Secure Aggregation for Privacy-Preserving
Machine Learning", section 4) and Bell et al. (CCS 2020, SecAgg+): each bank shares its
agreement secret key and its self-mask seed among the cohort, so that ``t`` survivors can
rebuild a dropped bank's pairwise seeds, or a surviving bank's self-mask, but never both.

PyCryptodome's Shamir (16-byte secrets over GF(2^128)) is not installed in this project's
environment; a polynomial over a Mersenne prime field larger than any 32-byte secret is the
textbook construction, needs no splitting of seeds, and is small enough to read in full.
Any ``t`` shares determine the secret; ``t - 1`` reveal nothing about it.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from he.errors import HEError

PRIME = (1 << 521) - 1
SECRET_SIZES = (16, 32)
SHARE_BYTES = 66  # a field element: 521 bits


@dataclass(frozen=True)
class Share:
    """One holder's share: its x-coordinate (1..n) and the polynomial's value there."""

    index: int
    value: int

    def to_bytes(self) -> bytes:
        return self.index.to_bytes(2, "big") + self.value.to_bytes(SHARE_BYTES, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        if len(data) != 2 + SHARE_BYTES:
            raise HEError(f"a share is {2 + SHARE_BYTES} bytes, got {len(data)}")
        share = cls(int.from_bytes(data[:2], "big"), int.from_bytes(data[2:], "big"))
        if share.index == 0 or share.value >= PRIME:
            raise HEError("a share's index must be positive and its value a field element")
        return share


def split(secret: bytes, threshold: int, holders: int) -> list[Share]:
    """Split ``secret`` into ``holders`` shares of which any ``threshold`` rebuild it."""
    if len(secret) not in SECRET_SIZES:
        raise HEError(f"a shared secret is 16 or 32 bytes, got {len(secret)}")
    if not 2 <= threshold <= holders < 1 << 16:
        raise HEError(f"need 2 <= threshold ({threshold}) <= holders ({holders}) < 65536")
    # Random coefficients of degree threshold-1 above the secret: any t-1 points are
    # consistent with every possible secret, so they reveal nothing.
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    return [Share(x, _evaluate(coefficients, x)) for x in range(1, holders + 1)]


def combine(shares: Sequence[Share], size: int) -> bytes:
    """Rebuild a ``size``-byte secret from at least ``threshold`` distinct shares.

    With fewer shares than the threshold the result is a wrong secret, not an error: the
    caller checks it (for a key, against the public key in the roster).
    """
    if size not in SECRET_SIZES:
        raise HEError(f"a shared secret is 16 or 32 bytes, not {size}")
    xs = [s.index for s in shares]
    if len(set(xs)) != len(xs) or len(xs) < 2:
        raise HEError("combining needs at least two shares with distinct indices")
    value = sum(s.value * _lagrange_at_zero(s.index, xs) for s in shares) % PRIME
    if value >= 1 << (8 * size):
        raise HEError("the shares do not rebuild a secret of this size (too few or tampered)")
    return value.to_bytes(size, "big")


def _evaluate(coefficients: Sequence[int], x: int) -> int:
    result = 0
    for c in reversed(coefficients):
        result = (result * x + c) % PRIME
    return result


def _lagrange_at_zero(xi: int, xs: Sequence[int]) -> int:
    numerator, denominator = 1, 1
    for xj in xs:
        if xj != xi:
            numerator = numerator * xj % PRIME
            denominator = denominator * (xj - xi) % PRIME
    return numerator * pow(denominator, -1, PRIME) % PRIME

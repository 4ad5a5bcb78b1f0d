"""Shamir t-of-n secret sharing of 16- or 32-byte seeds, with PyCryptodome's implementation.

Used as in Bonawitz et al. (CCS 2017, "Practical Secure Aggregation for Privacy-Preserving
Machine Learning", section 4) and Bell et al. (CCS 2020, SecAgg+): each bank shares its
agreement secret key and its self-mask seed among the cohort, so that ``t`` survivors can
rebuild a dropped bank's pairwise seeds, or a surviving bank's self-mask, but never both.

``Crypto.Protocol.SecretSharing.Shamir`` shares 16-byte secrets over GF(2^128); a 32-byte
secret is shared as two independent 16-byte halves under the same indices (the halves'
polynomials are independent, so ``t - 1`` shares still reveal nothing about either). Any
``t`` shares determine the secret. With fewer, ``combine`` returns a wrong value rather than
an error: the caller checks what it rebuilt (an agreement key against the roster's public
key; see ``he.recovery``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from Crypto.Protocol.SecretSharing import Shamir

from he.errors import HEError

HALF = 16  # PyCryptodome's secret size
SECRET_SIZES = (16, 32)
SHARE_BYTES = 32  # the value of a share of the largest secret
MAX_HOLDERS = 1 << 16


@dataclass(frozen=True)
class Share:
    """One holder's share: its index (1..n) and one 16-byte value per half of the secret."""

    index: int
    value: bytes

    def to_bytes(self) -> bytes:
        return self.index.to_bytes(2, "big") + self.value

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        if len(data) - 2 not in SECRET_SIZES:
            raise HEError(f"a share is {2 + 16} or {2 + SHARE_BYTES} bytes, got {len(data)}")
        share = cls(int.from_bytes(data[:2], "big"), bytes(data[2:]))
        if share.index == 0:
            raise HEError("a share's index must be positive")
        return share


def split(secret: bytes, threshold: int, holders: int) -> list[Share]:
    """Split ``secret`` into ``holders`` shares of which any ``threshold`` rebuild it."""
    if len(secret) not in SECRET_SIZES:
        raise HEError(f"a shared secret is 16 or 32 bytes, got {len(secret)}")
    if not 2 <= threshold <= holders < MAX_HOLDERS:
        raise HEError(f"need 2 <= threshold ({threshold}) <= holders ({holders}) < 65536")
    halves = [
        Shamir.split(threshold, holders, secret[i : i + HALF], ssss=False)
        for i in range(0, len(secret), HALF)
    ]
    return [
        Share(index, b"".join(half[index - 1][1] for half in halves))
        for index in range(1, holders + 1)
    ]


def combine(shares: Sequence[Share], size: int) -> bytes:
    """Rebuild a ``size``-byte secret from at least ``threshold`` distinct shares."""
    if size not in SECRET_SIZES:
        raise HEError(f"a shared secret is 16 or 32 bytes, not {size}")
    indices = [s.index for s in shares]
    if len(set(indices)) != len(indices) or len(indices) < 2:
        raise HEError("combining needs at least two shares with distinct indices")
    if any(len(s.value) != size for s in shares):
        raise HEError(f"every share of a {size}-byte secret carries {size} bytes")
    return b"".join(
        Shamir.combine([(s.index, s.value[i : i + HALF]) for s in shares], ssss=False)
        for i in range(0, size, HALF)
    )

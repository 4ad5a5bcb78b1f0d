"""CKKS parameter sets, their security check and the derived size bounds."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from he.errors import HEError

# Largest total coefficient-modulus bit count that keeps 128-bit classical security for
# a given ring dimension (HomomorphicEncryption.org standard, table for uniform ternary
# secrets; the same table SEAL enforces by default).
MAX_COEFF_BITS_128 = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}


@dataclass(frozen=True)
class CkksParams:
    """The CKKS parameters a key epoch and every ciphertext under it share.

    Defaults are chosen for wire size: with N=4096 a fresh ciphertext keeps only the first
    (60-bit) prime, so it costs 2 polynomials x 4096 coefficients x 8 bytes for 2048
    values, about 8x a float32. The second prime is SEAL's special prime and never
    travels. Total modulus 100 bits <= 109, so 128-bit security holds.
    """

    poly_modulus_degree: int = 4096
    coeff_mod_bit_sizes: tuple[int, ...] = field(default=(60, 40))
    global_scale_bits: int = 28

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeff_mod_bit_sizes", tuple(self.coeff_mod_bit_sizes))
        self.check()

    @property
    def slots(self) -> int:
        """Values one ciphertext holds."""
        return self.poly_modulus_degree // 2

    @property
    def data_primes(self) -> int:
        """Primes a fresh ciphertext carries (all but the special prime)."""
        return max(1, len(self.coeff_mod_bit_sizes) - 1)

    @property
    def max_plain_magnitude(self) -> float:
        """Largest plaintext coefficient a ciphertext (or a sum) holds, in value units.

        Strict for any primes SEAL picks: a b-bit prime exceeds 2^(b-1), so the data
        modulus Q exceeds 2^(bits - primes) and a centred coefficient below Q/2 never wraps.
        (2^30 at the defaults; the nominal 2^31 would wrap, as Q is a little below 2^60.)
        How much of it one bank may use is ``he.codec.headroom_limit``.
        """
        data_bits = sum(self.coeff_mod_bit_sizes[: self.data_primes])
        return float(2 ** (data_bits - self.data_primes - self.global_scale_bits - 1))

    @property
    def max_chunk_bytes(self) -> int:
        """Upper bound on one serialized ciphertext: two polynomials, uncompressed."""
        return 2 * self.poly_modulus_degree * self.data_primes * 8 + 4096

    @property
    def min_chunk_bytes(self) -> int:
        """Lower bound on one serialized ciphertext (compression cannot go below this)."""
        data_bits = sum(self.coeff_mod_bit_sizes[: self.data_primes])
        return int(2 * self.poly_modulus_degree * data_bits / 8 * 0.9)

    def chunks_for(self, length: int) -> int:
        """Ciphertexts needed for a vector of ``length`` values."""
        return math.ceil(length / self.slots)

    def check(self) -> None:
        """Raise HEError unless the parameters are well-formed and 128-bit secure."""
        n = self.poly_modulus_degree
        if n not in MAX_COEFF_BITS_128:
            raise HEError(f"poly_modulus_degree must be one of {sorted(MAX_COEFF_BITS_128)}")
        bits = self.coeff_mod_bit_sizes
        if len(bits) < 2 or any(not 20 <= b <= 60 for b in bits):
            raise HEError("coeff_mod_bit_sizes needs at least two primes of 20 to 60 bits")
        if sum(bits) > MAX_COEFF_BITS_128[n]:
            raise HEError(
                f"coefficient modulus of {sum(bits)} bits is above {MAX_COEFF_BITS_128[n]}, "
                f"the 128-bit security limit for poly_modulus_degree={n}"
            )
        if not 10 <= self.global_scale_bits < bits[0]:
            raise HEError("global_scale_bits must be at least 10 and below the first prime")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["coeff_mod_bit_sizes"] = list(self.coeff_mod_bit_sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CkksParams:
        try:
            return cls(
                poly_modulus_degree=int(data["poly_modulus_degree"]),
                coeff_mod_bit_sizes=tuple(int(b) for b in data["coeff_mod_bit_sizes"]),
                global_scale_bits=int(data["global_scale_bits"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise HEError(f"malformed CKKS parameters: {exc}") from exc

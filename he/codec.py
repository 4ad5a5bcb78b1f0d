"""Packing, encryption and decryption of model updates.

A bank sends ``[(n_k/u) * w_k, n_k/u, t_k]``: its weights scaled by its sample count in
units of ``u`` rows, the count in the same unit, then its integrity tag
(``he.integrity``). Summing these needs only additions, and the sum's count slot is the
total count, so FedAvg is one division after decryption and no bank's size is ever in the
clear; the tag slot lets members check who made the sum. ``u`` is a power of two, so
``n/u`` is exact in a float64 and FedAvg is the same for every ``u``
(docs/secure-aggregation.md, "Headroom and counts").
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import BinaryIO

import numpy as np
import tenseal as ts

from he.errors import HEError, UpdateInvalid
from he.params import CkksParams
from he.wire import HashingReader, HashingWriter, Header, iter_chunks, read_header

# Slots after the weights: the sample count, then the integrity tag.
TRAILER_SLOTS = 2
# Rows per count unit in a statistics round: a bank sends its moments scaled by n / 1024,
# so 100 million rows weigh about 97,656 and squared features up to about 30 still fit
# (headroom_limit). A protocol constant: every member divides by it the same way.
STATS_COUNT_UNIT = 1024
# A fresh ciphertext's noise and the encoder's rounding, per summand, in plaintext
# coefficient units: SEAL clips fresh noise at 6 sigma (19.2), public-key encryption
# multiplies it by at most N = 4096 terms twice over and adds the rounding of the
# special-prime switch: far below 2^20.
NOISE_COEFFICIENTS_PER_SUMMAND = 2**20
# Two reals per complex slot (v2): one plaintext coefficient is a sum of N/2 terms
# Re(z_j * root), each at most |z_j| <= sqrt(2) * the largest real; one real per slot (v1)
# gives at most 1 * it. The bound takes the larger, so it holds for both formats.
PACKING_FACTOR = math.sqrt(2)


def count_unit_check(unit: int) -> int:
    """Return ``unit`` if it is a power of two of at least 1, else raise HEError."""
    if isinstance(unit, bool) or not isinstance(unit, (int, np.integer)):
        raise HEError(f"a count unit must be a power of two of at least 1, not {unit!r}")
    if unit < 1 or int(unit) & (int(unit) - 1):
        raise HEError(f"a count unit must be a power of two of at least 1, not {unit!r}")
    return int(unit)


def check_finite(values: np.ndarray, what: str = "the update") -> None:
    """Refuse NaN or infinity before anything is encrypted, naming how many values."""
    bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise HEError(
            f"{what} holds {bad} value(s) that are NaN or infinite; nothing was encrypted "
            "(training diverged or a feature is not finite: lower the learning rate or "
            "check the input data)"
        )


def pack_update(weights: np.ndarray, n_samples: int, tag: float, unit: int = 1) -> np.ndarray:
    """Return ``[(n/unit) * w, n/unit, tag]`` as float64 (``tag`` from ``he.integrity``).

    ``unit`` (a power of two) is the number of rows one count unit stands for: 1 in a
    round of modest size, more when the consortium's rows would not fit the headroom.
    """
    if n_samples <= 0:
        raise HEError("a bank must train on at least one sample")
    flat = np.asarray(weights, dtype=np.float64).ravel()
    check_finite(flat)
    weight = float(n_samples) / count_unit_check(unit)  # exact: unit is a power of two
    return np.concatenate([flat * weight, [weight, float(tag)]])


def unpack_aggregate(summed: np.ndarray, unit: int = 1) -> tuple[np.ndarray, float]:
    """Split a decrypted ``[sum (n_k/u) w_k, sum n_k/u, sum t_k]`` into (FedAvg, total rows).

    Layout only: the tag slot is dropped unchecked. A node uses
    ``he.integrity.check_aggregate``, which also checks the tag.
    """
    rows = float(np.rint(summed[-TRAILER_SLOTS] * count_unit_check(unit)))
    if rows <= 0:
        raise HEError("the aggregate's count slot is not positive; wrong key or corrupt data")
    return summed[:-TRAILER_SLOTS] * (unit / rows), rows


def headroom_limit(params: CkksParams, max_summands: int) -> float:
    """Largest |value| each of ``max_summands`` banks may send so that the sum never wraps.

    Strict: the sum of the plaintext coefficients, with every summand's noise and rounding,
    stays below half the data modulus for any layout of the values, in v1 and in v2
    (``PACKING_FACTOR``). Masks cancel exactly modulo q, so they take no headroom.
    """
    if max_summands < 1:
        raise HEError("the headroom is for at least one summand")
    margin = max_summands * NOISE_COEFFICIENTS_PER_SUMMAND / 2.0**params.global_scale_bits
    return (params.max_plain_magnitude - margin) / (PACKING_FACTOR * max_summands)


def check_headroom(values: np.ndarray, params: CkksParams, max_summands: int) -> None:
    """Refuse a vector with NaN/infinity, or whose sum over ``max_summands`` banks could wrap."""
    check_finite(values)
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    limit = headroom_limit(params, max_summands)
    if peak > limit:
        raise HEError(
            f"largest value {peak:.3g} exceeds {limit:.3g}, the most that {max_summands} banks "
            "can add without overflow at this CKKS scale"
        )


def encrypt_vector(
    ctx: ts.Context,
    values: np.ndarray,
    params: CkksParams,
    fingerprint: str,
    out: BinaryIO,
) -> str:
    """Encrypt ``values`` chunk by chunk into ``out``; return the container's SHA-256."""
    values = np.asarray(values, dtype=np.float64).ravel()
    slots = params.slots
    header = Header(fingerprint, values.size, params.chunks_for(values.size), slots)
    writer = HashingWriter(out)
    writer.write(header.to_bytes())
    for start in range(0, values.size, slots):
        chunk = ts.ckks_vector(ctx, values[start : start + slots])
        writer.write_chunk(bytes(chunk.serialize()))
    return writer.hexdigest()


def encrypt_to_file(
    ctx: ts.Context, values: np.ndarray, params: CkksParams, fingerprint: str, path: Path
) -> str:
    """Encrypt into ``path``; return the digest."""
    with open(path, "wb") as out:
        return encrypt_vector(ctx, values, params, fingerprint, out)


def decrypt_vector(secret_ctx: ts.Context, stream: BinaryIO, params: CkksParams) -> np.ndarray:
    """Decrypt a container read from ``stream`` into a float64 array."""
    reader = HashingReader(stream)
    header = read_header(reader)
    parts: list[np.ndarray] = []
    for raw in iter_chunks(reader, header, params.max_chunk_bytes):
        try:
            vec = ts.ckks_vector_from(secret_ctx, raw)
        except (ValueError, RuntimeError) as exc:
            raise UpdateInvalid(f"ciphertext could not be parsed: {exc}") from exc
        parts.append(np.asarray(vec.decrypt(), dtype=np.float64))
    values = np.concatenate(parts) if parts else np.zeros(0)
    if values.size != header.length:
        raise UpdateInvalid(f"decrypted {values.size} values, header says {header.length}")
    return values

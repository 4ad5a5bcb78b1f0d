"""Packing, encryption and decryption of model updates.

A bank sends ``[n_k * w_k, n_k, t_k]``: its weights scaled by its sample count, the count,
then its integrity tag (``he.integrity``). Summing these needs only additions, and the
sum's count slot is the total count, so FedAvg is one division after decryption and no
bank's size is ever in the clear; the tag slot lets members check who made the sum.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import tenseal as ts

from he.errors import HEError, UpdateInvalid
from he.params import CkksParams
from he.wire import HashingReader, HashingWriter, Header, iter_chunks, read_header

# Slots after the weights: the sample count, then the integrity tag.
TRAILER_SLOTS = 2


def pack_update(weights: np.ndarray, n_samples: int, tag: float) -> np.ndarray:
    """Return ``[n * w, n, tag]`` as float64 (``tag`` from ``he.integrity.tag_value``)."""
    if n_samples <= 0:
        raise HEError("a bank must train on at least one sample")
    flat = np.asarray(weights, dtype=np.float64).ravel()
    return np.concatenate([flat * float(n_samples), [float(n_samples), float(tag)]])


def unpack_aggregate(summed: np.ndarray) -> tuple[np.ndarray, float]:
    """Split a decrypted ``[sum n_k w_k, sum n_k, sum t_k]`` into (FedAvg, total count).

    Layout only: the tag slot is dropped unchecked. A node uses
    ``he.integrity.check_aggregate``, which also checks the tag.
    """
    total = float(np.rint(summed[-TRAILER_SLOTS]))
    if total <= 0:
        raise HEError("the aggregate's count slot is not positive; wrong key or corrupt data")
    return summed[:-TRAILER_SLOTS] / total, total


def check_headroom(values: np.ndarray, params: CkksParams, max_summands: int) -> None:
    """Refuse a vector whose sum over ``max_summands`` banks could overflow the modulus."""
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    limit = params.max_plain_magnitude / max_summands
    if peak > limit:
        raise HEError(
            f"largest value {peak:.3g} exceeds {limit:.3g}, the most that {max_summands} banks "
            "can add without overflow at this CKKS scale; lower global_scale_bits"
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

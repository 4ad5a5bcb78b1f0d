"""Validation of an uploaded encrypted vector before anything is stored.

TenSEAL parses an empty byte string as a zero-length vector and does not notice flipped
bits, so every structural fact is checked here and integrity rests on the SHA-256 digest
the bank signs (checked by the caller against the digest returned here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

import tenseal as ts

from he.errors import UpdateInvalid
from he.params import CkksParams
from he.wire import HashingReader, iter_chunks, read_header


@dataclass(frozen=True)
class Validated:
    """What validation learned about an accepted container."""

    digest: str
    size_bytes: int
    length: int
    chunks: int


def validate_vector(
    stream: BinaryIO,
    public_ctx: ts.Context,
    params: CkksParams,
    *,
    fingerprint: str,
    expected_length: int,
) -> Validated:
    """Check a container against the round's key epoch and model; raise UpdateInvalid.

    Reads the stream once, one ciphertext at a time.
    """
    reader = HashingReader(stream)
    header = read_header(reader)
    check_epoch_and_length(header.fingerprint, header.length, fingerprint, expected_length)
    if header.slots != params.slots or header.chunks != params.chunks_for(header.length):
        raise UpdateInvalid(
            f"header declares {header.chunks} chunks of {header.slots} slots; "
            f"expected {params.chunks_for(header.length)} of {params.slots}"
        )
    for index, raw in enumerate(iter_chunks(reader, header, params.max_chunk_bytes)):
        want = min(params.slots, header.length - index * params.slots)
        _check_chunk(raw, index, want, public_ctx, params)
    if not reader.at_end():
        raise UpdateInvalid("unexpected bytes after the last ciphertext")
    return Validated(reader.hexdigest(), reader.bytes_read, header.length, header.chunks)


def _check_chunk(raw: bytes, index: int, want: int, ctx: ts.Context, params: CkksParams) -> None:
    where = f"chunk {index}"
    if len(raw) < params.min_chunk_bytes:
        raise UpdateInvalid(f"{where} is {len(raw)} bytes, too small to be a ciphertext")
    try:
        vec = ts.ckks_vector_from(ctx, raw)
        ct = vec.ciphertext()[0]
    except (ValueError, RuntimeError, IndexError) as exc:
        raise UpdateInvalid(
            f"{where} is not a ciphertext under this round's CKKS parameters: {exc}"
        ) from exc
    if vec.size() != want:
        raise UpdateInvalid(f"{where} holds {vec.size()} values, expected {want}")
    if _attr(ct, "poly_modulus_degree") != params.poly_modulus_degree:
        raise UpdateInvalid(f"{where} uses another polynomial modulus degree")
    if _attr(ct, "size") != 2 or _attr(ct, "coeff_modulus_size") != params.data_primes:
        raise UpdateInvalid(f"{where} is not a fresh two-component ciphertext")
    if _attr(ct, "scale") != float(2**params.global_scale_bits):
        raise UpdateInvalid(
            f"{where} is at scale {_attr(ct, 'scale'):.0f}, expected 2^{params.global_scale_bits}"
        )
    if _attr(ct, "is_transparent"):
        raise UpdateInvalid(f"{where} is transparent (not encrypted)")


def _attr(ct: object, name: str) -> object:
    # SEAL's bindings expose some ciphertext facts as methods and some as properties.
    value = getattr(ct, name)
    return value() if callable(value) else value


def check_epoch_and_length(
    found_fingerprint: str, found_length: int, fingerprint: str, expected_length: int
) -> None:
    """A container's key epoch and vector length must be the round's (v1 and v2 alike)."""
    if found_fingerprint != fingerprint:
        raise UpdateInvalid(
            f"encrypted under key epoch {found_fingerprint[:16]}..., this round uses "
            f"{fingerprint[:16]}...; install the current consortium key"
        )
    if found_length != expected_length:
        raise UpdateInvalid(
            f"vector has {found_length} values, this round's model needs {expected_length}"
        )

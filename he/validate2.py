"""Validation of untrusted v2 containers, in the spirit of ``he/validate.py``.

Everything a node or the portal reads from another party passes here first: the header,
every length (before it is read), SEAL's own header inside each chunk, and each
ciphertext's degree, modulus count, parms_id, size, scale and transparency. A malformed
container is an ``UpdateInvalid`` with the reason, never a crash or an unbounded read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

import tenseal.sealapi as seal

from he.errors import UpdateInvalid
from he.ring import SealKit, load_ciphertext
from he.seeded import check_shape, max_chunk_bytes2, min_chunk_bytes2
from he.validate import check_epoch_and_length
from he.wire import HashingReader
from he.wire2 import Header2, iter_chunks2, read_header2


@dataclass(frozen=True)
class Validated2:
    """What a valid v2 container turned out to be."""

    digest: str
    size_bytes: int
    length: int
    chunks: int
    seeded: bool


def validate_vector2(
    stream: BinaryIO,
    kit: SealKit,
    *,
    fingerprint: str,
    expected_length: int,
    seeded: bool,
) -> Validated2:
    """Check a v2 container against the round's key epoch, model and seeding; raise UpdateInvalid.

    ``seeded`` is what the caller expects: True for a bank's upload, False for an aggregate.
    Reads the stream once, one ciphertext at a time.
    """
    reader = HashingReader(stream)
    header = read_header2(reader)
    _check_header(header, kit, fingerprint, expected_length, seeded)
    low, high = (
        min_chunk_bytes2(kit.params, seeded=seeded),
        max_chunk_bytes2(kit.params, seeded=seeded),
    )
    for index, raw in enumerate(iter_chunks2(reader, header, high)):
        if len(raw) < low:
            raise UpdateInvalid(f"chunk {index} is {len(raw)} bytes, too small to be a ciphertext")
        check_ciphertext(load_ciphertext(kit, raw), kit, f"chunk {index}")
    if not reader.at_end():
        raise UpdateInvalid("unexpected bytes after the last ciphertext")
    return Validated2(reader.hexdigest(), reader.bytes_read, header.length, header.chunks, seeded)


def _check_header(
    header: Header2, kit: SealKit, fingerprint: str, expected_length: int, seeded: bool
) -> None:
    check_epoch_and_length(header.fingerprint, header.length, fingerprint, expected_length)
    check_shape(header, kit)
    if header.seeded != seeded:
        want = "a seeded upload" if seeded else "an unseeded aggregate"
        raise UpdateInvalid(f"expected {want}, the header says seeded={header.seeded}")


def check_ciphertext(ct: seal.Ciphertext, kit: SealKit, where: str) -> None:
    """Refuse a ciphertext that is not fresh, two-component, at the first level and scale."""
    if ct.poly_modulus_degree() != kit.params.poly_modulus_degree:
        raise UpdateInvalid(f"{where} uses another polynomial modulus degree")
    if ct.coeff_modulus_size() != len(kit.moduli) or list(ct.parms_id()) != kit.parms_id:
        raise UpdateInvalid(f"{where} is not at this key epoch's first data level (parms_id)")
    if ct.size() != 2:
        raise UpdateInvalid(f"{where} has {ct.size()} components, expected 2")
    if ct.scale != kit.scale:
        raise UpdateInvalid(
            f"{where} is at scale {ct.scale:.0f}, expected 2^{kit.params.global_scale_bits}"
        )
    if not ct.is_ntt_form() or ct.is_transparent():
        raise UpdateInvalid(f"{where} is transparent or not in NTT form (not encrypted)")

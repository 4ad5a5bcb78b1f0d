"""Seeded symmetric CKKS with two reals per complex slot, masked in the plaintext ring.

Encrypting with the members' *secret* key lets SEAL replace the second polynomial by the
seed it was drawn from (about half the bytes), and packing reals ``2j`` and ``2j+1`` into the
real and imaginary parts of slot ``j`` carries ``N`` reals per ciphertext instead of ``N/2``:
together about 2x a float32 on the wire (``benchmarks/RESULTS.md``). Masks are added to the
encoded plaintext words before encryption (``he/masking.py``), so they survive seeding and
cancel in the homomorphic sum, which is computed chunk by chunk like ``he/aggregate.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import tenseal.sealapi as seal

from he.errors import HEError, UpdateInvalid
from he.masking import MaskTerm, RoundBinding, add_mod, combined_mask
from he.params import CkksParams
from he.ring import (
    SealKit,
    add_to_first_polynomial,
    load_ciphertext,
    plaintext_from_words,
    plaintext_words,
    save_bytes,
)
from he.wire import HashingReader, HashingWriter
from he.wire2 import Header2, iter_chunks2, read_header2, write_header

# The chunk index is part of every mask's key, so each chunk gets fresh mask words.
Masker = Callable[[int], np.ndarray | None]


def reals_per_chunk(params: CkksParams) -> int:
    """Reals one ciphertext carries: two per complex slot."""
    return params.poly_modulus_degree


def max_chunk_bytes2(params: CkksParams, *, seeded: bool) -> int:
    """Largest serialised ciphertext: one polynomial (seeded) or two, uncompressed."""
    polys = 1 if seeded else 2
    return polys * params.poly_modulus_degree * params.data_primes * 8 + 4096


def min_chunk_bytes2(params: CkksParams, *, seeded: bool) -> int:
    """Smallest serialised ciphertext compression could produce from uniform words."""
    polys = 1 if seeded else 2
    data_bits = sum(params.coeff_mod_bit_sizes[: params.data_primes])
    return int(polys * params.poly_modulus_degree * data_bits / 8 * 0.9)


def encode_chunk(kit: SealKit, reals: np.ndarray) -> seal.Plaintext:
    """Encode up to N reals, two per complex slot, at the first data level."""
    if reals.size > reals_per_chunk(kit.params):
        raise HEError(f"a chunk holds at most {reals_per_chunk(kit.params)} reals")
    if not np.all(np.isfinite(reals)):
        raise HEError("refusing to encrypt NaN or infinity")
    plain = seal.Plaintext()
    _encode_into(kit, np.asarray(reals, dtype=np.float64), plain)
    return plain


def _encode_into(kit: SealKit, reals: np.ndarray, plain: seal.Plaintext) -> None:
    # Reals 2j and 2j+1 are the real and imaginary parts of slot j: a complex view of the
    # float64 pairs, with no arithmetic; only a short last chunk is copied to pad it.
    per = reals_per_chunk(kit.params)
    if reals.size != per or not reals.flags.c_contiguous:
        padded = np.zeros(per)
        padded[: reals.size] = reals
        reals = padded
    kit.encoder.encode(reals.view(np.complex128).tolist(), kit.parms_id, kit.scale, plain)


def decode_chunk(kit: SealKit, plain: seal.Plaintext, count: int) -> np.ndarray:
    """Unpack ``count`` reals from a decrypted plaintext."""
    slots = np.asarray(kit.encoder.decode_complex(plain))
    reals = np.empty(2 * slots.size)
    reals[0::2] = slots.real
    reals[1::2] = slots.imag
    return reals[:count]


def mask_plaintext(kit: SealKit, plain: seal.Plaintext, mask: np.ndarray) -> seal.Plaintext:
    """``plain + mask`` in the ring, word by word modulo each data prime."""
    return plaintext_from_words(kit, add_mod(plaintext_words(kit, plain), mask, kit.moduli))


def masker_for(kit: SealKit, terms: Sequence[MaskTerm], binding: RoundBinding) -> Masker:
    """The mask source for an upload: the sum of ``terms`` for each chunk index."""
    degree = kit.params.poly_modulus_degree

    def mask(chunk: int) -> np.ndarray | None:
        return combined_mask(terms, binding, chunk, kit.moduli, degree) if terms else None

    return mask


def encrypt_vector2(
    kit: SealKit, values: np.ndarray, fingerprint: str, out: BinaryIO, masker: Masker | None = None
) -> str:
    """Encrypt ``values`` seeded and packed into a v2 container; return its SHA-256.

    ``masker`` gives each chunk's mask: ``masker_for`` derives it as it goes, a
    ``he.premask.PrecomputedMasks`` made while the node trained only hands it over.
    """
    if kit.encryptor is None:
        raise HEError("seeded symmetric encryption needs the members' secret context")
    values, header = seeded_header(kit.params, values, fingerprint)
    writer = HashingWriter(out)
    write_header(writer, header)
    for raw in encrypt_block(kit, values, 0, masker):
        writer.write_chunk(raw)
    return writer.hexdigest()


def seeded_header(
    params: CkksParams, values: np.ndarray, fingerprint: str
) -> tuple[np.ndarray, Header2]:
    """``values`` as one flat float64 array and the seeded v2 header that carries them.

    Finiteness is checked here, once per vector (not per chunk).
    """
    values = np.ascontiguousarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(values)):
        raise HEError("refusing to encrypt NaN or infinity")
    per = reals_per_chunk(params)
    return values, Header2(fingerprint, values.size, -(-values.size // per), per, seeded=True)


def encrypt_block(
    kit: SealKit, values: np.ndarray, first: int, masker: Masker | None
) -> Iterator[bytes]:
    """The serialised seeded ciphertexts of ``values``, cut into chunks from chunk ``first``.

    ``values`` starts at chunk ``first`` of its vector (0 for a whole vector; a worker
    encrypting one block of chunks passes that block's), so each chunk gets its own mask.
    """
    per = reals_per_chunk(kit.params)
    plain = seal.Plaintext()  # one plaintext, re-encoded for every chunk
    for offset in range(0, values.size, per):
        _encode_into(kit, values[offset : offset + per], plain)
        index = first + offset // per
        yield encrypt_chunk(kit, plain, masker(index) if masker else None)


def encrypt_chunk(kit: SealKit, plain: seal.Plaintext, mask: np.ndarray | None) -> bytes:
    """One seeded ciphertext of ``plain + mask``, serialised.

    The mask goes onto the saved ciphertext's first polynomial (``add_to_first_polynomial``:
    the same ciphertext as encrypting the masked plaintext, without a plaintext round trip
    through the scratch file); when SEAL's layout is not the expected one, onto the plaintext.
    """
    assert kit.encryptor is not None  # encrypt_vector2 refuses a kit without one
    raw = save_bytes(kit, kit.encryptor.encrypt_symmetric(plain))
    if mask is None:
        return raw
    masked = add_to_first_polynomial(kit, raw, mask)
    if masked is not None:
        return masked
    return save_bytes(kit, kit.encryptor.encrypt_symmetric(mask_plaintext(kit, plain, mask)))


def decrypt_vector2(kit: SealKit, stream: BinaryIO) -> np.ndarray:
    """Decrypt a v2 container (seeded or not) into a float64 array."""
    if kit.decryptor is None:
        raise HEError("decryption needs the members' secret context")
    reader = HashingReader(stream)
    header = check_shape(read_header2(reader), kit)
    limit = max_chunk_bytes2(kit.params, seeded=header.seeded)
    parts = []
    for index, raw in enumerate(iter_chunks2(reader, header, limit)):
        plain = decrypt_plaintext(kit, load_ciphertext(kit, raw))
        count = min(header.reals_per_chunk, header.length - index * header.reals_per_chunk)
        parts.append(decode_chunk(kit, plain, count))
    return np.concatenate(parts)


def check_shape(header: Header2, kit: SealKit) -> Header2:
    """Refuse a header whose chunking does not match the kit's parameters."""
    if header.reals_per_chunk != reals_per_chunk(kit.params):
        raise UpdateInvalid(
            f"header declares {header.reals_per_chunk} reals per chunk; these parameters "
            f"carry {reals_per_chunk(kit.params)}"
        )
    return header


def decrypt_plaintext(kit: SealKit, ct: seal.Ciphertext) -> seal.Plaintext:
    """Decrypt one ciphertext to its plaintext (masked words and all)."""
    if kit.decryptor is None:
        raise HEError("decryption needs the members' secret context")
    plain = seal.Plaintext()
    kit.decryptor.decrypt(ct, plain)
    return plain


def sum_vectors2(
    paths: Sequence[Path], kit: SealKit, out: BinaryIO, correction: Masker | None = None
) -> str:
    """Add v2 containers chunk by chunk; optionally add a correction plaintext per chunk.

    The inputs are expanded from their seeds as they are read; the sum is written unseeded.
    ``correction`` (for example ``-(revealed self-masks + dropped banks' pair masks)``) is
    added to each chunk of the sum. Returns the SHA-256 of the written container.
    """
    if not paths:
        raise UpdateInvalid("nothing to aggregate")
    with contextlib.ExitStack() as stack:
        readers = [HashingReader(stack.enter_context(open(p, "rb"))) for p in paths]
        headers = [check_shape(read_header2(r), kit) for r in readers]
        if any(h != headers[0] for h in headers[1:]):
            raise UpdateInvalid("uploads disagree on key epoch, vector shape or seeding")
        limit = max_chunk_bytes2(kit.params, seeded=headers[0].seeded)
        streams = [iter_chunks2(r, headers[0], limit) for r in readers]
        writer = HashingWriter(out)
        write_header(writer, headers[0].unseeded())
        for index, total in enumerate(_chunk_sums(kit, streams, headers[0].chunks)):
            mask = correction(index) if correction else None
            if mask is not None:
                kit.evaluator.add_plain_inplace(total, plaintext_from_words(kit, mask))
            writer.write_chunk(save_bytes(kit, total))
        return writer.hexdigest()


def _chunk_sums(
    kit: SealKit, streams: list[Iterator[bytes]], chunks: int
) -> Iterator[seal.Ciphertext]:
    for _ in range(chunks):
        total = load_ciphertext(kit, next(streams[0]))
        for stream in streams[1:]:
            kit.evaluator.add_inplace(total, load_ciphertext(kit, next(stream)))
        yield total

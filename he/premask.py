"""Masks computed ahead of the update: every chunk's combined mask for a vector's length.

The masks of an upload depend only on the round's terms (seeds and signs), its binding and
the chunk index, never on the values (``he/masking.py``). A node that holds the final
cohort keys can therefore compute them while it trains, and encryption then only adds
them (``he/seeded.py::encrypt_vector2`` takes a ``PrecomputedMasks`` as its masker).
The words are exactly those of ``combined_mask``, chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from he.errors import HEError
from he.masking import MaskTerm, RoundBinding, mask_words_into
from he.ring import SealKit

# Words are below q < 2^60 (CkksParams allows primes of at most 60 bits) and each term adds
# at most q, so an accumulator below q takes fourteen terms before it could reach 2^64.
_TERMS_PER_REDUCTION = 14


@dataclass(frozen=True)
class PrecomputedMasks:
    """The combined mask of each chunk of a ``length``-value upload, as a ``Masker``.

    ``words[chunk]`` is that chunk's mask: one block of N words per data prime, each
    reduced modulo its prime. Calling it with a chunk index returns that row (None without
    terms, as ``masker_for`` does).
    """

    length: int
    words: np.ndarray | None  # (chunks, N * primes) uint64; None when there are no terms
    first: int = 0  # the chunk index of ``words[0]`` (a worker holds only its own block)

    @property
    def chunks(self) -> int:
        return 0 if self.words is None else int(self.words.shape[0])

    def __call__(self, chunk: int) -> np.ndarray | None:
        if self.words is None:
            return None
        row = chunk - self.first
        if not 0 <= row < self.words.shape[0]:
            stop = self.first + self.words.shape[0]
            raise HEError(f"no precomputed mask for chunk {chunk} of {self.first}..{stop - 1}")
        return self.words[row]


def chunk_count(kit: SealKit, length: int) -> int:
    """Chunks of a ``length``-value v2 upload: N reals (two per complex slot) per chunk."""
    if length < 1:
        raise HEError(f"an upload has at least one value, not {length}")
    per = kit.params.poly_modulus_degree
    return -(-length // per)


def precompute_masks(
    kit: SealKit,
    terms: Sequence[MaskTerm],
    binding: RoundBinding,
    length: int,
    block: range | None = None,
) -> PrecomputedMasks:
    """Every chunk's ``sum(sign * PRG(seed))`` for a ``length``-value upload.

    ``block`` (consecutive chunk indices) limits it to those chunks, for a worker that
    encrypts only them. Reads only the kit's parameters and primes (no SEAL object), so it
    may run on another thread while the kit itself is in use.
    """
    chunks = _block(chunk_count(kit, length), block)
    if not terms:
        return PrecomputedMasks(length, None, chunks.start)
    width = kit.params.poly_modulus_degree
    q = np.repeat(np.asarray(kit.moduli, dtype=np.uint64), width)
    acc = np.zeros((len(chunks), q.size), dtype=np.uint64)
    words = np.empty_like(acc)
    for count, term in enumerate(terms, start=1):
        _term_words(term, binding, kit.moduli, words, chunks.start)
        if term.sign < 0:
            # q - w lies in (0, q]: the negation modulo q, left unreduced until the next %.
            np.subtract(q, words, out=words)
        acc += words
        if count % _TERMS_PER_REDUCTION == 0:
            acc %= q
    acc %= q
    return PrecomputedMasks(length, acc, chunks.start)


def _block(total: int, block: range | None) -> range:
    """``block`` if it is a non-empty run of the upload's chunk indices (all by default)."""
    if block is None:
        return range(total)
    if block.step != 1 or not 0 <= block.start < block.stop <= total:
        raise HEError(f"chunks {block.start}..{block.stop - 1} are not a block of 0..{total - 1}")
    return block


def _term_words(
    term: MaskTerm, binding: RoundBinding, moduli: Sequence[int], out: np.ndarray, first: int
) -> None:
    for row in range(out.shape[0]):
        mask_words_into(term.seed, binding, first + row, moduli, out[row])

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

    @property
    def chunks(self) -> int:
        return 0 if self.words is None else int(self.words.shape[0])

    def __call__(self, chunk: int) -> np.ndarray | None:
        if self.words is None:
            return None
        if not 0 <= chunk < self.words.shape[0]:
            raise HEError(f"no precomputed mask for chunk {chunk} of {self.words.shape[0]}")
        return self.words[chunk]


def chunk_count(kit: SealKit, length: int) -> int:
    """Chunks of a ``length``-value v2 upload: N reals (two per complex slot) per chunk."""
    if length < 1:
        raise HEError(f"an upload has at least one value, not {length}")
    per = kit.params.poly_modulus_degree
    return -(-length // per)


def precompute_masks(
    kit: SealKit, terms: Sequence[MaskTerm], binding: RoundBinding, length: int
) -> PrecomputedMasks:
    """Every chunk's ``sum(sign * PRG(seed))`` for a ``length``-value upload.

    Reads only the kit's parameters and primes (no SEAL object), so it may run on another
    thread while the kit itself is in use.
    """
    chunks = chunk_count(kit, length)
    if not terms:
        return PrecomputedMasks(length, None)
    width = kit.params.poly_modulus_degree
    q = np.repeat(np.asarray(kit.moduli, dtype=np.uint64), width)
    acc = np.zeros((chunks, q.size), dtype=np.uint64)
    words = np.empty_like(acc)
    for count, term in enumerate(terms, start=1):
        _term_words(term, binding, kit.moduli, words)
        if term.sign < 0:
            # q - w lies in (0, q]: the negation modulo q, left unreduced until the next %.
            np.subtract(q, words, out=words)
        acc += words
        if count % _TERMS_PER_REDUCTION == 0:
            acc %= q
    acc %= q
    return PrecomputedMasks(length, acc)


def _term_words(
    term: MaskTerm, binding: RoundBinding, moduli: Sequence[int], out: np.ndarray
) -> None:
    for chunk in range(out.shape[0]):
        mask_words_into(term.seed, binding, chunk, moduli, out[chunk])

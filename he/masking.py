"""Pairwise and self masks in CKKS's plaintext ring (Bonawitz et al., CCS 2017, "SecAgg").

Banks ``u < v`` of a round's cohort share a seed ``s_uv`` (X25519 + HKDF, bound to the
consortium, round and key epoch). ``u`` adds ``+PRG(s_uv)`` to its encoded plaintext and
``v`` adds ``-PRG(s_uv)``, so the masks cancel exactly modulo each data prime in the sum, and
one bank's plaintext alone is uniform modulo ``q``: hidden even from holders of the CKKS
secret key unless every other cohort bank colludes. An optional self-mask ``+PRG(b_u)`` is
removed at the end from the revealed self-seeds, as in SecAgg, so that a bank declared
dropped whose upload arrives late cannot be unmasked.

The PRG is ChaCha20 keyed by HKDF-SHA256(seed, info = domain | consortium | round | key
epoch fingerprint | chunk index); words are sampled by rejection so each is uniform mod q.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from he.errors import HEError

SEED_BYTES = 32
_MASK_DOMAIN = b"consortium-secagg-mask-v2"
_PAIR_DOMAIN = b"consortium-secagg-pair-v2"
_NONCE = bytes(16)  # every chunk gets its own key, so one fixed nonce never repeats a stream


@dataclass(frozen=True)
class RoundBinding:
    """What every seed and mask of a round is bound to, so none can be replayed elsewhere."""

    consortium: str
    round: int
    epoch: str  # the key epoch's fingerprint

    def info(self, domain: bytes, *extra: str) -> bytes:
        parts = [self.consortium, str(self.round), self.epoch, *extra]
        if any("\n" in p for p in parts):
            raise HEError("a binding field may not contain a newline")
        return domain + b"\n" + "\n".join(parts).encode()


@dataclass(frozen=True)
class MaskTerm:
    """One mask a bank adds: ``sign * PRG(seed)``. ``peer`` names whom it is shared with."""

    peer: str
    seed: bytes
    sign: int

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_BYTES:
            raise HEError(f"a mask seed is {SEED_BYTES} bytes, got {len(self.seed)}")
        if self.sign not in (1, -1):
            raise HEError("a mask's sign is +1 or -1")


def mask_words(
    seed: bytes, binding: RoundBinding, chunk: int, moduli: Sequence[int], degree: int
) -> np.ndarray:
    """``degree`` words per prime, uniform modulo that prime, for one chunk of one seed."""
    out = np.empty(degree * len(moduli), dtype=np.uint64)
    mask_words_into(seed, binding, chunk, moduli, out)
    return out


def mask_words_into(
    seed: bytes, binding: RoundBinding, chunk: int, moduli: Sequence[int], out: np.ndarray
) -> None:
    """``mask_words`` written into ``out`` (one block of ``out.size / len(moduli)`` per prime)."""
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=binding.info(_MASK_DOMAIN, str(chunk)),
    ).derive(seed)
    stream = Cipher(algorithms.ChaCha20(key, _NONCE), mode=None).encryptor()
    degree = out.size // len(moduli)
    for block, q in enumerate(moduli):
        uniform_into(stream, q, out[block * degree : (block + 1) * degree])


def uniform_into(stream: object, q: int, out: np.ndarray) -> None:
    """Fill ``out`` (uint64) with words uniform modulo ``q`` drawn from a ChaCha20 stream."""
    # Rejection sampling on the low bit_length(q) bits: exact uniformity mod q, and for a
    # prime just below a power of two almost nothing is rejected. Each draw asks for a
    # sixteenth more than still needed, so the stream consumed (and so every word) depends
    # only on the seed, never on how the caller lays out its buffers.
    low = np.uint64((1 << q.bit_length()) - 1)
    filled = 0
    while filled < out.size:
        need = out.size - filled
        raw = stream.update(bytes(8 * (need + need // 16 + 8)))  # type: ignore[attr-defined]
        words = np.frombuffer(raw, dtype="<u8") & low
        kept = words[words < np.uint64(q)][:need]
        out[filled : filled + kept.size] = kept
        filled += kept.size


def combined_mask(
    terms: Sequence[MaskTerm],
    binding: RoundBinding,
    chunk: int,
    moduli: Sequence[int],
    degree: int,
) -> np.ndarray:
    """The sum of ``sign * PRG(seed)`` over ``terms``, reduced per prime (uint64)."""

    def total(sign: int) -> np.ndarray:
        return _sum_mod(
            (mask_words(t.seed, binding, chunk, moduli, degree) for t in terms if t.sign == sign),
            moduli,
            degree * len(moduli),
        )

    return add_mod(total(1), negate_mod(total(-1), moduli), moduli)


def _sum_mod(arrays: Iterable[np.ndarray], moduli: Sequence[int], size: int) -> np.ndarray:
    # Words are below q < 2^60 (CkksParams allows primes of at most 60 bits): a running sum
    # below q plus fourteen words stays below 2^64, so reduce once per fourteen additions.
    q = _modulus_column(moduli, size)
    acc = np.zeros(size, dtype=np.uint64)
    for count, words in enumerate(arrays, start=1):
        acc += words
        if count % 14 == 0:
            acc %= q
    return acc % q


def add_mod(a: np.ndarray, b: np.ndarray, moduli: Sequence[int]) -> np.ndarray:
    """``a + b`` block-wise modulo each prime; both inputs already reduced (< 2^61, no wrap)."""
    q = _modulus_column(moduli, a.size)
    total = a + b
    return np.where(total >= q, total - q, total)


def negate_mod(a: np.ndarray, moduli: Sequence[int]) -> np.ndarray:
    """``-a`` block-wise modulo each prime (zero stays zero)."""
    q = _modulus_column(moduli, a.size)
    return np.where(a == 0, a, q - a)


def _modulus_column(moduli: Sequence[int], size: int) -> np.ndarray:
    return np.repeat(np.asarray(moduli, dtype=np.uint64), size // len(moduli))


def pairwise_seed(
    own: X25519PrivateKey,
    own_id: str,
    peer: X25519PublicKey,
    peer_id: str,
    binding: RoundBinding,
) -> bytes:
    """The seed two banks share: HKDF over their X25519 secret, bound to round and pair."""
    if own_id == peer_id:
        raise HEError("a bank shares no pairwise mask with itself")
    low, high = sorted((own_id, peer_id))
    return HKDF(
        algorithm=hashes.SHA256(),
        length=SEED_BYTES,
        salt=None,
        info=binding.info(_PAIR_DOMAIN, low, high),
    ).derive(own.exchange(peer))


def pairwise_terms(
    own: X25519PrivateKey,
    own_id: str,
    peers: dict[str, X25519PublicKey],
    binding: RoundBinding,
) -> list[MaskTerm]:
    """The masks ``own_id`` adds for its cohort: ``+`` towards larger ids, ``-`` towards smaller."""
    return [
        MaskTerm(
            peer_id,
            pairwise_seed(own, own_id, key, peer_id, binding),
            pair_sign(own_id, peer_id),
        )
        for peer_id, key in sorted(peers.items())
        if peer_id != own_id
    ]


def pair_sign(own_id: str, peer_id: str) -> int:
    """+1 for the smaller id of a pair, -1 for the larger: the two masks cancel."""
    return 1 if own_id < peer_id else -1


def public_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    """The raw 32-byte X25519 public key (what the roster carries)."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

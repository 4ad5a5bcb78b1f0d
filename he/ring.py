"""SEAL's plaintext ring through ``tenseal.sealapi``: one kit of SEAL objects, and raw words.

A CKKS plaintext at the first data level is ``k`` blocks of ``N`` words (NTT form), block
``i`` reduced modulo the data prime ``q_i``. Secure aggregation adds masks to these words, so
this module reads them out and builds a plaintext back from words. SEAL exposes no setter,
so the plaintext is rebuilt with ``Plaintext.load`` from its uncompressed serialisation
(SEAL ``serialization.h``: a 16-byte header, then parms_id, coefficient count, scale and a
``DynArray`` with its own header, size and words). TenSEAL's bindings save and load only
through file paths, so each kit owns a private scratch directory for that round trip,
locked (``flock``) while the kit lives so that a sweep can tell a killed owner's directory
from a live one (``bank_node/scratch.py``).
"""

from __future__ import annotations

import fcntl
import os
import struct
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tenseal as ts
import tenseal.sealapi as seal

from he.errors import HEError, UpdateInvalid
from he.params import CkksParams

# /dev/shm keeps the save/load round trip (masked plaintexts, ciphertexts) in memory where
# the system offers it; the directory itself comes from mkdtemp (mode 0700, random name).
_SHM = Path("/dev/shm")  # noqa: S108
SCRATCH_ROOT = _SHM if _SHM.is_dir() else Path(tempfile.gettempdir())
SCRATCH_PREFIX = "secagg-"
# Held with an exclusive flock for the kit's life: the kernel drops it when the process dies,
# however it dies (SIGKILL included), so an unlocked lock file marks a directory as stale.
SCRATCH_LOCK = ".lock"
_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, major, minor, compression, reserved, size
_PLAIN_META = struct.Struct("<4QQd")  # parms_id, coefficient count, scale
# parms_id, NTT form, polynomials, degree, primes, scale, correction factor (SEAL 4)
_CIPHER_META = struct.Struct("<4QBQQQdQ")


class ScratchDir:
    """A private directory (mode 0700, random name) for SEAL's save/load round trip.

    Removed when the object is collected; while it lives, its lock file is held with an
    exclusive ``flock``.
    """

    def __init__(self, root: Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=root or SCRATCH_ROOT)
        self.path = Path(self._dir.name)
        # Locked under another name, then renamed: a sweep never finds the lock file unlocked.
        staged = self.path / f"{SCRATCH_LOCK}.new"
        lock = os.open(staged, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
        weakref.finalize(self, os.close, lock)
        staged.rename(self.path / SCRATCH_LOCK)


@dataclass
class SealKit:
    """The SEAL objects one party needs at a key epoch's parameters.

    Built from a TenSEAL context: a public one gives the encoder and evaluator (enough to
    add ciphertexts and masks), a secret one also the symmetric encryptor and decryptor.
    Not thread-safe: the scratch file is reused by every save and load.
    """

    params: CkksParams
    context: seal.SEALContext
    encoder: seal.CKKSEncoder
    evaluator: seal.Evaluator
    parms_id: list[int]
    moduli: tuple[int, ...]
    encryptor: seal.Encryptor | None = None
    decryptor: seal.Decryptor | None = None
    _scratch: ScratchDir = field(default_factory=ScratchDir)

    @property
    def scale(self) -> float:
        return float(2**self.params.global_scale_bits)

    @property
    def words(self) -> int:
        """Words of one plaintext polynomial: N per data prime."""
        return self.params.poly_modulus_degree * len(self.moduli)

    def __post_init__(self) -> None:
        # A plain string: save and load take a path string, once per chunk on the hot path.
        self.scratch_file = str(self._scratch.path / "obj")
        # Each word's prime, block by block: the modulus of every word of a plaintext.
        self.modulus_column = np.repeat(
            np.asarray(self.moduli, dtype=np.uint64), self.params.poly_modulus_degree
        )

    @property
    def scratch(self) -> Path:
        return Path(self.scratch_file)


def kit_from_tenseal(ctx: ts.Context, params: CkksParams) -> SealKit:
    """Wrap the SEAL context inside ``ctx``; refuse one made with other parameters."""
    context = ctx.seal_context().data
    data = context.first_context_data()
    parms = data.parms()
    moduli = tuple(int(m.value()) for m in parms.coeff_modulus())
    if parms.poly_modulus_degree() != params.poly_modulus_degree:
        raise HEError("the context's polynomial degree differs from the key epoch's parameters")
    if len(moduli) != params.data_primes or [m.bit_length() for m in moduli] != list(
        params.coeff_mod_bit_sizes[: params.data_primes]
    ):
        raise HEError("the context's data primes differ from the key epoch's parameters")
    kit = SealKit(
        params=params,
        context=context,
        encoder=seal.CKKSEncoder(context),
        evaluator=seal.Evaluator(context),
        parms_id=list(context.first_parms_id()),
        moduli=moduli,
    )
    if ctx.is_private():
        secret = ctx.secret_key().data
        kit.encryptor = seal.Encryptor(context, secret)
        kit.decryptor = seal.Decryptor(context, secret)
    return kit


def save_bytes(kit: SealKit, obj: object) -> bytes:
    """Serialise a SEAL object (ciphertext, seeded ciphertext, plaintext) to bytes."""
    obj.save(kit.scratch_file)  # type: ignore[attr-defined]
    with open(kit.scratch_file, "rb") as saved:
        return saved.read()


def load_ciphertext(kit: SealKit, raw: bytes) -> seal.Ciphertext:
    """Parse a serialised ciphertext (a seeded one is expanded); UpdateInvalid if malformed."""
    check_seal_header(raw)
    kit.scratch.write_bytes(raw)
    ct = seal.Ciphertext()
    try:
        ct.load(kit.context, str(kit.scratch))
    except (ValueError, RuntimeError, TypeError) as exc:
        raise UpdateInvalid(f"not a ciphertext under these CKKS parameters: {exc}") from exc
    return ct


def check_seal_header(raw: bytes) -> None:
    """Refuse bytes whose SEAL header is missing, foreign or disagrees with their length.

    Checked before SEAL sees the bytes, so a lying size field cannot make it read past the
    chunk or inflate a compressed body beyond what the chunk bound allows.
    """
    if len(raw) < _HEADER.size:
        raise UpdateInvalid("ciphertext is shorter than SEAL's 16-byte header")
    magic, size, major, _minor, mode, _reserved, total = _HEADER.unpack_from(raw)
    expected = seal.Serialization.SEALHeader()
    if magic != expected.magic or size != _HEADER.size or major != expected.version_major:
        raise UpdateInvalid("ciphertext does not start with a SEAL header of this SEAL version")
    if mode not in {m.value for m in _MODES}:
        raise UpdateInvalid(f"ciphertext uses unknown compression mode {mode}")
    if total != len(raw):
        raise UpdateInvalid(f"SEAL header declares {total} bytes, the chunk has {len(raw)}")


_MODES = (seal.COMPR_MODE_TYPE.NONE, seal.COMPR_MODE_TYPE.ZLIB, seal.COMPR_MODE_TYPE.ZSTD)


def plaintext_words(kit: SealKit, plain: seal.Plaintext) -> np.ndarray:
    """The plaintext's words (NTT form, one block per data prime) as uint64."""
    fast = _words_from_saved(save_bytes(kit, plain), plain.coeff_count())
    if fast is not None:
        return fast
    # The binding reads one word per call: correct, but a third of an upload's encryption time.
    return np.fromiter(map(plain.data, range(plain.coeff_count())), np.uint64, plain.coeff_count())


def _words_from_saved(raw: bytes, count: int) -> np.ndarray | None:
    """The words of a saved plaintext when SEAL stored them verbatim, else None.

    SEAL compresses with zstd, which stores incompressible data (uniform words mod q) in
    *raw* blocks: the bytes are there as they are, behind small block headers. Anything
    else (compressed blocks, an unexpected layout) returns None and the caller reads the
    words one by one instead.
    """
    body = _saved_body(raw)
    offset = _PLAIN_META.size + _HEADER.size + 8
    if body is None or len(body) != offset + 8 * count:
        return None
    return np.frombuffer(body, dtype="<u8", offset=offset, count=count).copy()


def _zstd_raw_content(frame: bytes) -> bytes | None:
    # zstd frame format (RFC 8878, section 3.1.1): magic, frame header, then blocks with a
    # 3-byte header each (last flag, type, size); type 0 is a raw block.
    if len(frame) < 6 or frame[:4] != b"\x28\xb5\x2f\xfd":
        return None
    descriptor = frame[4]
    single_segment = bool(descriptor & 0x20)
    if descriptor & 0x03:  # a dictionary id: not written by SEAL
        return None
    fcs_bytes = (0, 2, 4, 8)[descriptor >> 6] or (1 if single_segment else 0)
    position = 5 + (0 if single_segment else 1) + fcs_bytes
    parts = []
    while position + 3 <= len(frame):
        block = int.from_bytes(frame[position : position + 3], "little")
        kind, size = (block >> 1) & 3, block >> 3
        if kind != 0:
            return None
        parts.append(frame[position + 3 : position + 3 + size])
        position += 3 + size
        if block & 1:
            checksum = 4 if descriptor & 0x04 else 0
            return b"".join(parts) if position + checksum == len(frame) else None
    return None


def plaintext_from_words(kit: SealKit, words: np.ndarray) -> seal.Plaintext:
    """Build an NTT-form plaintext at the first data level, at the kit's scale."""
    words = np.ascontiguousarray(words, dtype="<u8")
    if words.size != kit.words:
        raise HEError(f"a plaintext needs {kit.words} words, got {words.size}")
    kit.scratch.write_bytes(_plaintext_bytes(kit, words))
    plain = seal.Plaintext()
    plain.load(kit.context, str(kit.scratch))
    return plain


def _plaintext_bytes(kit: SealKit, words: np.ndarray) -> bytes:
    header = seal.Serialization.SEALHeader()
    array_size = _HEADER.size + 8 + 8 * words.size
    total = _HEADER.size + _PLAIN_META.size + array_size
    none = seal.COMPR_MODE_TYPE.NONE.value
    version = (header.magic, _HEADER.size, header.version_major, header.version_minor, none, 0)
    return b"".join(
        [
            _HEADER.pack(*version, total),
            _PLAIN_META.pack(*kit.parms_id, words.size, kit.scale),
            _HEADER.pack(*version, array_size),
            struct.pack("<Q", words.size),
            words.tobytes(),
        ]
    )


def add_to_first_polynomial(kit: SealKit, raw: bytes, words: np.ndarray) -> bytes | None:
    """A saved seeded ciphertext with ``words`` added to its first polynomial, else None.

    A symmetric CKKS ciphertext of ``m`` is ``(m - a*s - e, a)`` in NTT form, and the seeded
    one stores ``a`` as its seed: adding ``words`` to the first polynomial gives exactly the
    ciphertext SEAL makes of ``m + words`` with the same ``a`` and ``e``, without rebuilding
    a plaintext through a file. The result is written uncompressed (SEAL's ``NONE`` mode;
    zstd cannot shrink uniform words anyway). Any layout but SEAL 4's seeded two-polynomial
    ciphertext at the kit's first data level returns None, and the caller masks the
    plaintext instead.
    """
    body = _saved_body(raw)
    start = _CIPHER_META.size + _HEADER.size + 8
    if body is None or len(body) < start + 8 * kit.words:
        return None
    *parms_id, ntt, polys, degree, primes, _scale, _factor = _CIPHER_META.unpack_from(body)
    count = struct.unpack_from("<Q", body, start - 8)[0]
    expected = (kit.parms_id, 1, 2, kit.params.poly_modulus_degree, len(kit.moduli), kit.words)
    if (list(parms_id), ntt, polys, degree, primes, count) != expected:
        return None
    out = bytearray(_none_header(raw, _HEADER.size + len(body)) + body)
    first = np.frombuffer(out, dtype="<u8", offset=_HEADER.size + start, count=kit.words)
    # Both are below q < 2^61: the sum does not wrap, and where it is below q the
    # difference wraps above it, so the minimum of the two is the sum modulo q.
    np.add(first, words, out=first)
    np.minimum(first, first - kit.modulus_column, out=first)
    return bytes(out)


def _saved_body(raw: bytes) -> bytes | None:
    """The uncompressed body of a SEAL save (no compression, or zstd raw blocks), else None."""
    mode = raw[5] if len(raw) >= _HEADER.size else -1
    if mode == seal.COMPR_MODE_TYPE.NONE.value:
        return raw[_HEADER.size :]
    if mode == seal.COMPR_MODE_TYPE.ZSTD.value:
        return _zstd_raw_content(raw[_HEADER.size :])
    return None


def _none_header(raw: bytes, total: int) -> bytes:
    magic, size, major, minor, _mode, reserved, _total = _HEADER.unpack_from(raw)
    none = seal.COMPR_MODE_TYPE.NONE.value
    return _HEADER.pack(magic, size, major, minor, none, reserved, total)

"""Container format v2 (``CKKSVEC2``): seeded, complex-packed CKKS ciphertexts.

Layout::

    8 bytes  magic b"CKKSVEC2"
    2 bytes  format version, unsigned big-endian (2)
    4 bytes  header length H (1..4096), unsigned big-endian
    H bytes  header, UTF-8 JSON: {"fingerprint": 64 hex, "length": L, "chunks": C,
             "reals_per_chunk": R, "seeded": bool, "packing": "complex2"}
    C times: 4 bytes chunk length (big-endian), then one SEAL-serialised ciphertext

Each ciphertext carries ``R = N`` reals, two per complex slot. An upload is *seeded* (SEAL
regenerates the second polynomial from a seed); a sum of ciphertexts is not. Every length is
bounded and nothing may follow the last chunk; the bounds themselves live in
``he/validate2.py`` (they depend on the CKKS parameters).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from he.errors import UpdateInvalid
from he.wire import HashingReader, HashingWriter

MAGIC = b"CKKSVEC2"
FORMAT_VERSION = 2
PACKING = "complex2"
MAX_HEADER_BYTES = 4096
MAX_LENGTH = 1 << 28  # 268M reals: far above any model here, low enough to bound a read
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_FIELDS = {"fingerprint", "length", "chunks", "reals_per_chunk", "seeded", "packing"}


@dataclass(frozen=True)
class Header2:
    """What a v2 container declares about the vector it carries."""

    fingerprint: str
    length: int
    chunks: int
    reals_per_chunk: int
    seeded: bool
    packing: str = PACKING

    def to_bytes(self) -> bytes:
        body = json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()
        return MAGIC + _U16.pack(FORMAT_VERSION) + _U32.pack(len(body)) + body

    def unseeded(self) -> Header2:
        """The same vector after a homomorphic operation (no longer seedable)."""
        return Header2(self.fingerprint, self.length, self.chunks, self.reals_per_chunk, False)


def write_header(writer: HashingWriter, header: Header2) -> None:
    writer.write(header.to_bytes())


def read_header2(reader: HashingReader) -> Header2:
    """Parse and sanity-check a v2 header; UpdateInvalid with the reason otherwise."""
    if reader.read_exact(len(MAGIC), "magic") != MAGIC:
        raise UpdateInvalid("not a v2 encrypted vector: the body must start with b'CKKSVEC2'")
    (version,) = _U16.unpack(reader.read_exact(2, "format version"))
    if version != FORMAT_VERSION:
        raise UpdateInvalid(f"container format version {version} is not supported (want 2)")
    (size,) = _U32.unpack(reader.read_exact(4, "header length"))
    if not 0 < size <= MAX_HEADER_BYTES:
        raise UpdateInvalid(f"header length {size} is outside 1..{MAX_HEADER_BYTES}")
    header = _parse(reader.read_exact(size, "header"))
    _check(header)
    return header


def _parse(body: bytes) -> Header2:
    try:
        raw = json.loads(body.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UpdateInvalid(f"header is not valid JSON: {exc}") from exc
    except RecursionError:
        raise UpdateInvalid("header is not valid JSON: nested too deeply") from None
    if not isinstance(raw, dict) or set(raw) != _FIELDS:
        raise UpdateInvalid(f"header must have exactly the fields {sorted(_FIELDS)}")
    return Header2(**_typed(raw))


def _typed(raw: dict[str, Any]) -> dict[str, Any]:
    ints = ("length", "chunks", "reals_per_chunk")
    # bool is an int in Python; a header saying "length": true is not a length.
    if any(type(raw[k]) is not int for k in ints) or type(raw["seeded"]) is not bool:
        raise UpdateInvalid("header fields length, chunks, reals_per_chunk must be integers")
    if not isinstance(raw["fingerprint"], str) or not isinstance(raw["packing"], str):
        raise UpdateInvalid("header fields fingerprint and packing must be strings")
    return raw


def _check(header: Header2) -> None:
    if not _HEX64.fullmatch(header.fingerprint):
        raise UpdateInvalid("header fingerprint must be 64 lowercase hex characters")
    if header.packing != PACKING:
        raise UpdateInvalid(f"packing {header.packing!r} is not supported (want {PACKING!r})")
    if not 0 < header.length <= MAX_LENGTH:
        raise UpdateInvalid(f"header length {header.length} is outside 1..{MAX_LENGTH}")
    if header.reals_per_chunk <= 0:
        raise UpdateInvalid("header declares no reals per chunk")
    expected = -(-header.length // header.reals_per_chunk)
    if header.chunks != expected:
        raise UpdateInvalid(
            f"header declares {header.chunks} chunks; {header.length} reals at "
            f"{header.reals_per_chunk} per chunk need {expected}"
        )


def iter_chunks2(reader: HashingReader, header: Header2, max_chunk: int) -> Iterator[bytes]:
    """Yield the serialised ciphertexts one at a time, refusing an oversized one before reading."""
    for index in range(header.chunks):
        (size,) = _U32.unpack(reader.read_exact(4, f"length of chunk {index}"))
        if size > max_chunk:
            raise UpdateInvalid(f"chunk {index} claims {size} bytes, above the {max_chunk} limit")
        yield reader.read_exact(size, f"chunk {index}")

"""The container an encrypted vector travels in: a small JSON header, then ciphertexts.

Layout (see docs/architecture.md)::

    b"CKKSVEC1" | u32 header length | header JSON | (u32 chunk length | chunk bytes)*

Readers pull one chunk at a time from a binary stream, so neither the portal nor a node
ever needs a whole vector of ciphertexts in memory.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from he.errors import UpdateInvalid

MAGIC = b"CKKSVEC1"
MAX_HEADER_BYTES = 4096
_U32 = struct.Struct(">I")


@dataclass(frozen=True)
class Header:
    """What a container declares about the vector it carries."""

    fingerprint: str
    length: int
    chunks: int
    slots: int

    def to_bytes(self) -> bytes:
        body = json.dumps(
            {
                "fingerprint": self.fingerprint,
                "length": self.length,
                "chunks": self.chunks,
                "slots": self.slots,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        return MAGIC + _U32.pack(len(body)) + body


class HashingWriter:
    """Write to a stream while computing the SHA-256 of everything written."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()
        self.bytes_written = 0

    def write(self, data: bytes) -> None:
        self._stream.write(data)
        self._hash.update(data)
        self.bytes_written += len(data)

    def write_chunk(self, chunk: bytes) -> None:
        self.write(_U32.pack(len(chunk)))
        self.write(chunk)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class HashingReader:
    """Read exact byte counts from a stream while hashing them; a short read is an error."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()
        self.bytes_read = 0

    def read_exact(self, n: int, what: str) -> bytes:
        data = self._stream.read(n)
        if len(data) != n:
            raise UpdateInvalid(
                f"truncated: expected {n} bytes of {what} at offset {self.bytes_read}, "
                f"got {len(data)}"
            )
        self._hash.update(data)
        self.bytes_read += n
        return data

    def at_end(self) -> bool:
        return self._stream.read(1) == b""

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def read_header(reader: HashingReader) -> Header:
    """Parse and sanity-check the container header."""
    if reader.read_exact(len(MAGIC), "magic") != MAGIC:
        raise UpdateInvalid("not an encrypted vector: the body must start with b'CKKSVEC1'")
    (size,) = _U32.unpack(reader.read_exact(4, "header length"))
    if not 0 < size <= MAX_HEADER_BYTES:
        raise UpdateInvalid(f"header length {size} is outside 1..{MAX_HEADER_BYTES}")
    try:
        raw = json.loads(reader.read_exact(size, "header").decode())
        header = Header(
            fingerprint=str(raw["fingerprint"]),
            length=int(raw["length"]),
            chunks=int(raw["chunks"]),
            slots=int(raw["slots"]),
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError) as exc:
        # OverflowError: a length of 1e999 is JSON's infinity, which int() refuses.
        raise UpdateInvalid(f"header is not valid JSON with the required fields: {exc}") from exc
    except RecursionError:
        # A header of 4 KB can nest deeper than the JSON decoder recurses: not a header.
        raise UpdateInvalid("header is not valid JSON: nested too deeply") from None
    if header.length <= 0 or header.chunks <= 0 or header.slots <= 0:
        raise UpdateInvalid("header declares an empty vector")
    return header


def iter_chunks(reader: HashingReader, header: Header, max_chunk: int) -> Iterator[bytes]:
    """Yield the serialized ciphertexts one at a time, refusing absurd lengths early."""
    for index in range(header.chunks):
        (size,) = _U32.unpack(reader.read_exact(4, f"length of chunk {index}"))
        if size > max_chunk:
            raise UpdateInvalid(f"chunk {index} claims {size} bytes, above the {max_chunk} limit")
        yield reader.read_exact(size, f"chunk {index}")

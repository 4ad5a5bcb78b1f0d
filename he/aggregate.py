"""The homomorphic sum the portal runs: chunk by chunk across all uploads.

Memory holds one ciphertext per upload at a time (plus the running sum of that chunk), so
peak memory grows neither with the model size nor, beyond a few kilobytes each, with the
number of banks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import tenseal as ts

from he.errors import UpdateInvalid
from he.params import CkksParams
from he.wire import HashingReader, HashingWriter, Header, iter_chunks, read_header


def sum_vectors(
    paths: Sequence[Path],
    public_ctx: ts.Context,
    params: CkksParams,
    out: BinaryIO,
) -> str:
    """Add the encrypted vectors stored at ``paths``; write the sum to ``out``.

    All inputs must share one header (fingerprint, length, chunking), which validation at
    upload time guarantees. Returns the SHA-256 of the written container.
    """
    if not paths:
        raise UpdateInvalid("nothing to aggregate")
    with contextlib.ExitStack() as stack:
        readers = [HashingReader(stack.enter_context(open(p, "rb"))) for p in paths]
        headers = [read_header(r) for r in readers]
        first = headers[0]
        if any(h != first for h in headers[1:]):
            raise UpdateInvalid("uploads disagree on key epoch or vector shape")
        writer = HashingWriter(out)
        writer.write(Header(first.fingerprint, first.length, first.chunks, first.slots).to_bytes())
        streams = [iter_chunks(r, first, params.max_chunk_bytes) for r in readers]
        for _ in range(first.chunks):
            total = ts.ckks_vector_from(public_ctx, next(streams[0]))
            for stream in streams[1:]:
                total.add_(ts.ckks_vector_from(public_ctx, next(stream)))
            writer.write_chunk(bytes(total.serialize()))
        return writer.hexdigest()

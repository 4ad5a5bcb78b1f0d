"""A worker process that masks and encrypts one block of a v2 upload's chunks.

SEAL's Python binding holds the GIL, so two threads encrypt no faster than one; two
processes do. ``bank_node/encrypt_pool.py`` starts one worker per block of chunks when the
node checks the round's cohort keys, and hands it, through its stdin, a ``WorkerTask`` and
the members' secret CKKS context (never through a file, never logged). The worker builds
its kit, computes its block's masks while the node trains (on another core, outside the
node's GIL), answers ``READY``, then reads its block of values and writes back one
ciphertext per chunk, exactly as ``he.seeded.encrypt_vector2`` makes them in-process,
and last the CPU seconds that took it (what the node's benchmark and metrics report).

It imports ``he/``, numpy and TenSEAL only (not torch, not the node's agent), so it starts
in a fraction of a second. Every message is a frame: an 8-byte big-endian length, then
that many bytes.

    python -m bank_node.encrypt_worker        (stdin: task, secret, values; stdout: frames)
"""

from __future__ import annotations

import json
import struct
import sys
import time
from dataclasses import dataclass
from itertools import pairwise
from typing import IO

import numpy as np
import tenseal as ts

from he.errors import HEError
from he.masking import MaskTerm, RoundBinding
from he.params import CkksParams
from he.premask import chunk_count, precompute_masks
from he.ring import kit_from_tenseal
from he.seeded import encrypt_block, reals_per_chunk

READY = b"ready"
_LENGTH = struct.Struct(">Q")
# A frame above this is refused before it is read: the largest message is one block of
# float64 values, far below it for any vector ``he/wire2.py`` accepts.
MAX_FRAME = 1 << 32


class WorkerGone(Exception):
    """The other end closed the pipe or sent a malformed frame."""


def write_frame(sink: IO[bytes], body: bytes | memoryview) -> None:
    sink.write(_LENGTH.pack(len(body)))
    sink.write(body)


def read_frame(source: IO[bytes]) -> bytes:
    """One frame's body; WorkerGone at end of stream or on a bad length."""
    head = source.read(_LENGTH.size)
    if len(head) != _LENGTH.size:
        raise WorkerGone("the pipe closed before a frame's length")
    (size,) = _LENGTH.unpack(head)
    if size > MAX_FRAME:
        raise WorkerGone(f"a frame of {size} bytes is above the {MAX_FRAME} limit")
    body = source.read(size)
    if len(body) != size:
        raise WorkerGone(f"the pipe closed {size - len(body)} bytes before a frame's end")
    return body


@dataclass(frozen=True)
class WorkerTask:
    """One worker's share of an upload: chunks ``first .. stop - 1`` of ``length`` values."""

    params: CkksParams
    binding: RoundBinding
    terms: tuple[MaskTerm, ...]
    length: int
    first: int
    stop: int

    @property
    def block(self) -> range:
        return range(self.first, self.stop)

    def value_span(self) -> slice:
        """Where this block's values sit in the whole vector."""
        per = reals_per_chunk(self.params)
        return slice(self.first * per, min(self.length, self.stop * per))

    def to_bytes(self) -> bytes:
        body = {
            "params": self.params.to_dict(),
            "binding": [self.binding.consortium, self.binding.round, self.binding.epoch],
            "terms": [[t.peer, t.seed.hex(), t.sign] for t in self.terms],
            "length": self.length,
            "block": [self.first, self.stop],
        }
        return json.dumps(body).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> WorkerTask:
        body = json.loads(raw)
        consortium, number, epoch = body["binding"]
        return cls(
            params=CkksParams.from_dict(body["params"]),
            binding=RoundBinding(consortium, int(number), epoch),
            terms=tuple(MaskTerm(p, bytes.fromhex(s), int(sign)) for p, s, sign in body["terms"]),
            length=int(body["length"]),
            first=int(body["block"][0]),
            stop=int(body["block"][1]),
        )


def split_blocks(params: CkksParams, length: int, workers: int) -> list[tuple[int, int]]:
    """``workers`` runs of consecutive chunks as even as they come (none empty)."""
    if workers < 1:
        raise ValueError("at least one worker")
    chunks = -(-length // reals_per_chunk(params))
    count = min(workers, chunks)
    edges = [chunks * w // count for w in range(count + 1)]
    return list(pairwise(edges))


def serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """One task: masks, ``READY``, a ciphertext frame per chunk of the block, its CPU time."""
    task = WorkerTask.from_bytes(read_frame(source))
    kit = kit_from_tenseal(ts.context_from(read_frame(source)), task.params)
    if task.stop > chunk_count(kit, task.length):
        raise HEError(f"block {task.first}..{task.stop - 1} lies beyond the upload's chunks")
    masks = precompute_masks(kit, task.terms, task.binding, task.length, task.block)
    write_frame(sink, READY)
    sink.flush()
    values = np.frombuffer(read_frame(source), dtype="<f8")
    started = time.process_time()
    span = task.value_span()
    if values.size != span.stop - span.start:
        raise HEError(f"the block holds {span.stop - span.start} values, not {values.size}")
    for raw in encrypt_block(kit, values, task.first, masks):
        write_frame(sink, raw)
    write_frame(sink, struct.pack(">d", time.process_time() - started))
    sink.flush()


def cpu_seconds(frame: bytes) -> float:
    """The worker's closing frame: the CPU seconds its block's encryption took."""
    if len(frame) != 8:
        raise WorkerGone("the worker's closing frame is not its CPU time")
    return float(struct.unpack(">d", frame)[0])


def main() -> int:
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except WorkerGone:
        return 1  # the node went away or gave up on this worker: nothing to report
    return 0


if __name__ == "__main__":
    sys.exit(main())

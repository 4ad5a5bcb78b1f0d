"""The check of an upload's ciphertexts, as run in the validation process (no Django here).

Validating a container parses every ciphertext with SEAL, which holds the interpreter lock
for the whole parse. Run in a web worker's own process, 50 banks' uploads at once would
keep that lock, and the cores, from the threads answering status polls; run here, in a
helper process at a lower CPU priority (``lower_priority``), they leave both to the polls
(``consortium/rounds/validation_pool.py``). Everything a job needs travels in it: the
epoch's public context the first time a fingerprint is seen, then it is cached.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import tenseal as ts

from he.keys import load_public_context
from he.params import CkksParams
from he.ring import kit_from_tenseal
from he.validate import validate_vector
from he.validate2 import validate_vector2

# Niceness of the validation process: CFS then gives a web worker's threads about ten
# times its share of a busy core (weights 1024 against 110).
NICENESS = 10
_CACHE_SIZE = 8
_contexts: dict[str, ts.Context] = {}


class ContextMissing(Exception):
    """This process has not seen the epoch's context yet: send the job again with it."""


@dataclass(frozen=True)
class BodyJob:
    """One upload body on disk to check against its round."""

    path: str
    masked: bool
    params: CkksParams
    fingerprint: str
    expected_length: int
    context: bytes | None = None  # the epoch's public context; None once this process has it


def lower_priority() -> None:
    """Initializer of the validation process: yield the CPU to the web threads."""
    os.nice(NICENESS)


def run_job(job: BodyJob) -> tuple[str, int]:
    """The body's SHA-256 and size, or UpdateInvalid naming the failed check."""
    return check_body(job, _context(job))


def check_body(job: BodyJob, ctx: ts.Context) -> tuple[str, int]:
    """Validate the body of ``job`` under the epoch's public context ``ctx``."""
    with open(job.path, "rb") as body:
        if job.masked:
            checked2 = validate_vector2(
                body,
                kit_from_tenseal(ctx, job.params),
                fingerprint=job.fingerprint,
                expected_length=job.expected_length,
                seeded=True,
            )
            return checked2.digest, checked2.size_bytes
        checked = validate_vector(
            body,
            ctx,
            job.params,
            fingerprint=job.fingerprint,
            expected_length=job.expected_length,
        )
        return checked.digest, checked.size_bytes


def _context(job: BodyJob) -> ts.Context:
    ctx = _contexts.get(job.fingerprint)
    if ctx is not None:
        return ctx
    if job.context is None:
        raise ContextMissing(job.fingerprint)
    # load_public_context refuses a context carrying a secret key, as in the web worker.
    ctx = load_public_context(job.context, job.params)
    if len(_contexts) >= _CACHE_SIZE:
        _contexts.pop(next(iter(_contexts)))
    _contexts[job.fingerprint] = ctx
    return ctx

"""An upload as the services take it: its checked headers, its size limit, its body
streamed to disk, and the check of that body (a ``CKKSVEC1`` container in a v1 round, a
seeded ``CKKSVEC2`` one in a v2 round)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from django.conf import settings

from consortium import metrics
from consortium.api.errors import ApplicationError, Conflict, Forbidden
from consortium.members.models import Bank
from consortium.rounds import storage
from consortium.rounds.crypto import epoch_context, epoch_params
from consortium.rounds.models import Round, RoundState
from consortium.rounds.selectors_secagg import mask_key_exists
from consortium.rounds.validation_pool import validate
from consortium.rounds.validation_worker import BodyJob
from he import wire2
from he.params import CkksParams
from he.seeded import max_chunk_bytes2, reals_per_chunk
from he.wire import MAGIC, MAX_HEADER_BYTES
from protocol import PrivacyClaim

CHUNK = 1024 * 1024


class Readable(Protocol):
    """What an upload body is read from: the WSGI request, or a file in tests and tools."""

    def read(self, size: int = ..., /) -> bytes: ...


@dataclass(frozen=True)
class Upload:
    """An upload whose headers passed the input serializer; the body is not read yet."""

    digest: str
    signature: str
    body: Readable
    content_length: int | None = None
    privacy: PrivacyClaim = field(default_factory=PrivacyClaim)


def container_max_bytes(params: CkksParams, length: int) -> int:
    """The largest valid container for ``length`` values under ``params``.

    Magic, header length and the largest header the reader accepts (the margin for the
    container's own framing), then one length prefix and the largest serialized
    ciphertext per chunk: anything longer cannot pass validation.
    """
    chunk = 4 + params.max_chunk_bytes
    return len(MAGIC) + 4 + MAX_HEADER_BYTES + params.chunks_for(length) * chunk


def container_max_bytes2(params: CkksParams, length: int) -> int:
    """The largest valid seeded ``CKKSVEC2`` container for ``length`` reals under ``params``.

    Its framing (magic, format version, header length, the largest header the reader
    accepts), then per chunk a length prefix and the largest seeded ciphertext.
    """
    chunks = -(-length // reals_per_chunk(params))
    chunk = 4 + max_chunk_bytes2(params, seeded=True)
    return len(wire2.MAGIC) + 2 + 4 + wire2.MAX_HEADER_BYTES + chunks * chunk


def upload_limit(rnd: Round) -> int:
    """The size limit of an upload to ``rnd``: its expected ciphertext size (v1 or v2
    container), and never more than the portal-wide ``CONSORTIUM_MAX_UPLOAD_BYTES``."""
    params = epoch_params(rnd.key_epoch)
    bound = container_max_bytes2 if rnd.masked else container_max_bytes
    return min(settings.MAX_UPLOAD_BYTES, bound(params, rnd.vector_length))


def body_check(rnd: Round, path: Path) -> tuple[str, int]:
    """Validate an upload's body against the round; its SHA-256 and size, or UpdateInvalid.

    A v2 round takes only a seeded ``CKKSVEC2`` container of its vector length under its
    key epoch's parameters; a v1 round a ``CKKSVEC1`` one.
    """
    epoch = rnd.key_epoch
    job = BodyJob(
        path=str(path),
        masked=rnd.masked,
        params=epoch_params(epoch),
        fingerprint=epoch.fingerprint,
        expected_length=rnd.vector_length,
    )
    return validate(job, lambda: epoch_context(epoch), lambda: bytes(epoch.public_context))


def _too_big(limit: int) -> ApplicationError:
    return ApplicationError(
        f"upload larger than the {limit}-byte limit", status_code=413, limit=limit
    )


def body_to_temp(upload: Upload, *, limit: int | None = None) -> Path:
    """Copy the request body to a temp file in bounded memory, enforcing the size limit.

    A declared ``Content-Length`` above ``limit`` (default: the portal-wide limit) is
    refused with 413 before a byte is read; a body that runs past it, as soon as it does.
    """
    limit = settings.MAX_UPLOAD_BYTES if limit is None else limit
    declared = upload.content_length
    if declared is not None and declared > limit:
        metrics.update_rejected("too_large")
        raise _too_big(limit)
    path = storage.temp_path()
    try:
        written = _copy_bounded(upload.body, path, limit)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    metrics.UPLOAD_BYTES.inc(written)
    if declared is not None and written < declared:
        # The client went away mid-body (a killed node, a dropped connection): nothing of
        # it is kept, and the node's retry starts afresh.
        metrics.update_rejected("incomplete")
        path.unlink(missing_ok=True)
        raise ApplicationError(
            f"the upload ended after {written} of the {declared} declared bytes; retry it"
        )
    if written == 0:
        metrics.update_rejected("empty")
        path.unlink(missing_ok=True)
        raise ApplicationError("the upload body is empty; send the encrypted update")
    return path


def _copy_bounded(body: Readable, path: Path, limit: int) -> int:
    """Write ``body`` to ``path`` chunk by chunk; refuse it (413) once it passes ``limit``."""
    written = 0
    with open(path, "wb") as out:
        while piece := body.read(CHUNK):
            written += len(piece)
            if written > limit:
                metrics.update_rejected("too_large")
                raise _too_big(limit)
            out.write(piece)
    return written


# v2 states after the survivors were fixed: an upload now would come too late to be unmasked.
_UPLOADS_CLOSED = (RoundState.UNMASKING, RoundState.AGGREGATING, RoundState.PUBLISHED)


def masked_upload_refusal(rnd: Round, bank: Bank) -> tuple[str, ApplicationError] | None:
    """Why ``bank`` may not upload to the v2 round ``rnd`` now (a metrics reason and the
    error), or None: uploads only in the open phase, only from banks with a mask key."""
    if rnd.state == RoundState.SHARING:
        message = f"round {rnd.number} is still in its sharing phase; upload once it is open"
        return "round sharing", Conflict(message)
    if rnd.state in _UPLOADS_CLOSED and bank.slug in rnd.dropped:
        return "declared dropped", Conflict(
            f"round {rnd.number} closed its uploads: you were declared dropped; your masks "
            "are being cancelled"
        )
    if rnd.state == RoundState.OPEN and not mask_key_exists(rnd, bank):
        return "no mask key", Forbidden(
            f"you did not advertise a mask key in the sharing phase of round {rnd.number}, "
            "so your update could not be unmasked; wait for the next round"
        )
    return None

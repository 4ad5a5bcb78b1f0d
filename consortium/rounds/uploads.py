"""An upload as the services take it: its checked headers, its size limit, and its body
streamed to disk."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from django.conf import settings

from consortium import metrics
from consortium.api.errors import ApplicationError
from consortium.rounds import storage
from consortium.rounds.crypto import epoch_params
from consortium.rounds.models import Round
from he.params import CkksParams
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


def upload_limit(rnd: Round) -> int:
    """The size limit of an upload to ``rnd``: its expected ciphertext size, and never more
    than the portal-wide ``CONSORTIUM_MAX_UPLOAD_BYTES``."""
    expected = container_max_bytes(epoch_params(rnd.key_epoch), rnd.vector_length)
    return min(settings.MAX_UPLOAD_BYTES, expected)


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

"""Reading stored ciphertext blobs (uploads and aggregates) back for streaming."""

from __future__ import annotations

from typing import Any

from consortium.api.errors import ApplicationError
from consortium.rounds import storage


def blob_open(relpath: str) -> Any:
    """Open a stored blob for streaming; the caller closes it."""
    stream = storage.open_blob(relpath)
    if stream is None:
        raise ApplicationError(
            "the stored blob is missing: the retention policy deletes old rounds' "
            "ciphertexts (manage.py blobs_retain); the manifest keeps their digests",
            status_code=410,
        )
    return stream

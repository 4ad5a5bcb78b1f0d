"""Where ciphertext blobs live: a directory tree, or an S3-compatible bucket.

Every upload and aggregate is first written to a local staging file (``temp_path``, under
``BLOB_DIR/tmp``) and checked there; ``commit`` then puts it in the store atomically — a
rename on the filesystem, one PUT to the bucket — so a reader never sees half a blob. The
store is chosen by ``BLOB_STORE`` (``filesystem``, the default, or ``s3``; see
``consortium/rounds/storage_s3.py`` and docs/operations.md). Callers never touch paths in
the store: they read through ``open_blob`` and ``local_copies`` and delete through
``blob_remove``, which behave alike on both.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

from consortium.rounds import storage_s3


def blob_root() -> Path:
    """The local directory: the blobs themselves on the filesystem store, staging on both."""
    root = Path(settings.BLOB_DIR)
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    return root


def uses_s3() -> bool:
    return str(getattr(settings, "BLOB_STORE", "filesystem")) == "s3"


def temp_path() -> Path:
    """A fresh temporary file on the same filesystem as the final blobs."""
    fd, name = tempfile.mkstemp(dir=blob_root() / "tmp", suffix=".part")
    os.close(fd)
    return Path(name)


def upload_relpath(round_number: int, bank_slug: str, digest: str) -> str:
    return f"uploads/round-{round_number:05d}/{bank_slug}-{digest[:16]}.ckks"


def aggregate_relpath(round_number: int) -> str:
    return f"aggregates/round-{round_number:05d}.ckks"


def absolute(relpath: str) -> Path:
    """The file of a blob on the filesystem store (the S3 store has no such path)."""
    return blob_root() / relpath


def commit(tmp: Path, relpath: str) -> None:
    """Move a finished staging file into the store atomically; the staging file is gone after."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    if uses_s3():
        storage_s3.put(tmp, relpath)
        tmp.unlink(missing_ok=True)
        return
    final = absolute(relpath)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)


def open_blob(relpath: str) -> BinaryIO | None:
    """A stored blob opened for streaming (the caller closes it); None when not stored."""
    if uses_s3():
        return storage_s3.open_stream(relpath)
    try:
        return open(absolute(relpath), "rb")
    except FileNotFoundError:
        return None


@contextmanager
def local_copies(relpaths: Sequence[str]) -> Iterator[list[Path]]:
    """Local files holding the blobs, for code that reads paths (the encrypted sum).

    On the filesystem store these are the blobs themselves; from S3 each is downloaded to
    a staging file that is deleted on exit. FileNotFoundError names a blob not stored.
    """
    if not uses_s3():
        paths = [absolute(r) for r in relpaths]
        for path in paths:
            if not path.exists():
                raise FileNotFoundError(f"blob {path.relative_to(blob_root())} is not stored")
        yield paths
        return
    with ExitStack() as stack:
        paths = []
        for relpath in relpaths:
            tmp = temp_path()
            stack.callback(tmp.unlink, missing_ok=True)
            stream = storage_s3.open_stream(relpath)
            if stream is None:
                raise FileNotFoundError(f"blob {relpath} is not stored")
            with stream, open(tmp, "wb") as out:
                shutil.copyfileobj(stream, out, 1 << 20)
            paths.append(tmp)
        yield paths


def sweep_temp(older_than_seconds: int = 3600) -> int:
    """Delete abandoned partial uploads (a node killed mid-upload, a crashed worker)."""
    cutoff = time.time() - older_than_seconds
    removed = 0
    for path in (blob_root() / "tmp").glob("*.part"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def blob_size(relpath: str) -> int | None:
    """Size of a stored blob in bytes; None when it is not (or no longer) stored."""
    if uses_s3():
        return storage_s3.size(relpath)
    try:
        return absolute(relpath).stat().st_size
    except FileNotFoundError:
        return None


def blob_remove(relpath: str) -> bool:
    """Delete a stored blob; False when it was already gone (a retried retention run)."""
    if uses_s3():
        return storage_s3.remove(relpath)
    try:
        absolute(relpath).unlink()
    except FileNotFoundError:
        return False
    return True


def store_check() -> str:
    """ "ok", or why blobs cannot be stored now (the readiness probe's storage line)."""
    try:
        with tempfile.TemporaryFile(dir=blob_root() / "tmp") as handle:
            handle.write(b"ok")
    except OSError as exc:
        return f"not writable: {exc.strerror}"
    return storage_s3.reachable() if uses_s3() else "ok"

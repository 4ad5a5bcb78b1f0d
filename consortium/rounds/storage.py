"""Where ciphertext blobs live: a directory tree, written by temp file + atomic rename."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from django.conf import settings


def blob_root() -> Path:
    root = Path(settings.BLOB_DIR)
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    return root


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
    return blob_root() / relpath


def commit(tmp: Path, relpath: str) -> Path:
    """Move a finished temp file into place atomically (a reader never sees half a file)."""
    final = absolute(relpath)
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    return final


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
    try:
        return absolute(relpath).stat().st_size
    except FileNotFoundError:
        return None


def blob_remove(relpath: str) -> bool:
    """Delete a stored blob; False when it was already gone (a retried retention run)."""
    try:
        absolute(relpath).unlink()
    except FileNotFoundError:
        return False
    return True

"""At start-up, remove the SEAL scratch directories that killed node processes left behind.

Each ``he.ring.SealKit`` holds an exclusive ``flock`` on its directory's lock file while it
lives; the kernel releases it when the process dies, SIGKILL and OOM kills included, when no
``finally`` or finaliser runs. A directory whose lock this sweep can take has no owner left.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from pathlib import Path

from he.ring import SCRATCH_LOCK, SCRATCH_PREFIX, SCRATCH_ROOT

log = logging.getLogger(__name__)

# A directory without a lock file was made by a node from before the lock, or by one killed
# between creating it and locking it (microseconds). Untouched this long, nothing uses it:
# a live kit rewrites its scratch file at every round it takes part in.
UNLOCKED_MAX_AGE_SECONDS = 24 * 3600.0


def scratch_sweep(root: Path | None = None, *, now: float | None = None) -> list[Path]:
    """Remove the stale ``secagg-*`` directories under ``root``; the ones removed."""
    removed = []
    for path in sorted((root or SCRATCH_ROOT).glob(f"{SCRATCH_PREFIX}*")):
        if path.is_dir() and not path.is_symlink() and _stale_removed(path, now or time.time()):
            removed.append(path)
    if removed:
        log.info("removed %d scratch directories of processes gone", len(removed))
    return removed


def _stale_removed(path: Path, now: float) -> bool:
    try:
        lock = os.open(path / SCRATCH_LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return _old_unlocked_removed(path, now)
    except OSError:  # another user's directory, or not ours to judge
        return False
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Removed while the lock is held: a kit never reuses a directory, so none can race us.
        shutil.rmtree(path, ignore_errors=True)
    except BlockingIOError:
        return False  # its kit is alive
    finally:
        os.close(lock)
    return not path.exists()


def _old_unlocked_removed(path: Path, now: float) -> bool:
    try:
        newest = max(p.stat().st_mtime for p in [path, *path.iterdir()])
    except OSError:
        return False
    if now - newest < UNLOCKED_MAX_AGE_SECONDS:
        return False
    shutil.rmtree(path, ignore_errors=True)
    return not path.exists()

"""The start-up sweep removes SEAL scratch directories of killed processes, and no other."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bank_node.scratch import UNLOCKED_MAX_AGE_SECONDS, scratch_sweep
from he.ring import SCRATCH_LOCK, SCRATCH_PREFIX, SCRATCH_ROOT, ScratchDir, kit_from_tenseal
from tests.conftest import PARAMS

ROOT = Path(__file__).resolve().parents[2]
# A node's process in miniature: it makes a kit's scratch directory, says where, and waits.
_HOLDER = (
    "import sys, time; from pathlib import Path; from he.ring import ScratchDir; "
    "d = ScratchDir(Path(sys.argv[1])); print(d.path, flush=True); time.sleep(600)"
)


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """Stand in for the repo-wide autouse fixture of that name: no Django here."""


def _killed_holder(root: Path) -> Path:
    """A scratch directory exactly as a node killed with SIGKILL leaves it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(root)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert holder.stdout is not None
    path = Path(holder.stdout.readline().strip())
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    return path


def test_a_directory_of_a_process_killed_with_sigkill_is_removed_and_a_live_one_kept(
    tmp_path: Path,
):
    dead = _killed_holder(tmp_path)
    live = ScratchDir(tmp_path)
    assert dead.is_dir() and (dead / SCRATCH_LOCK).exists()  # SIGKILL ran no clean-up
    assert scratch_sweep(tmp_path) == [dead]
    assert not dead.exists()
    assert live.path.is_dir() and (live.path / SCRATCH_LOCK).exists()


def test_a_kits_scratch_directory_stays_locked_while_the_kit_lives(ckks: Any):
    kit = kit_from_tenseal(ckks.secret, PARAMS)
    scratch = Path(kit.scratch_file).parent
    assert scratch.parent == SCRATCH_ROOT and scratch.name.startswith(SCRATCH_PREFIX)
    probe = os.open(scratch / SCRATCH_LOCK, os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(probe)


def test_a_directory_without_lock_file_is_removed_only_once_left_untouched_a_day(
    tmp_path: Path,
):
    old, fresh = tmp_path / f"{SCRATCH_PREFIX}old", tmp_path / f"{SCRATCH_PREFIX}fresh"
    for path in (old, fresh):
        path.mkdir()
        (path / "obj").write_bytes(b"saved")
    then = time.time() - UNLOCKED_MAX_AGE_SECONDS - 60
    for path in (old / "obj", old):
        os.utime(path, (then, then))
    assert scratch_sweep(tmp_path) == [old]
    assert fresh.is_dir() and not old.exists()


def test_other_names_in_the_scratch_root_are_left_alone(tmp_path: Path):
    other = tmp_path / "encshare_upd"
    other.mkdir()
    (tmp_path / f"{SCRATCH_PREFIX}file").write_text("not a directory")
    assert scratch_sweep(tmp_path) == []
    assert other.is_dir() and (tmp_path / f"{SCRATCH_PREFIX}file").exists()

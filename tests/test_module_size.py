"""No module outside tests and migrations grows past about 400 lines (docs/architecture.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# "About 400": a module a few lines over is not split for that alone; one this far over is.
MAX_LINES = 420


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """Stand in for the repo-wide autouse fixture of that name: no Django here."""


def _modules() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [
        ROOT / name
        for name in listed
        if not name.startswith("tests/") and "/migrations/" not in name and (ROOT / name).exists()
    ]


def test_no_module_outside_tests_and_migrations_passes_about_400_lines():
    modules = _modules()
    too_long = {
        str(path.relative_to(ROOT)): lines
        for path in modules
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert len(modules) > 100  # the listing found the code
    assert too_long == {}

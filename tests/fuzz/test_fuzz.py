"""Run each fuzz harness for a bounded time on its committed seed corpus: no crash, no hang,
no 5xx, no memory blow-up.

CONSORTIUM_FUZZ_SECONDS (default 20) sets the time per target; raise it locally to search
longer. A failure leaves libFuzzer's reproducer (crash-*, timeout-*, oom-*) in the test's
tmp directory; re-run it with `FUZZ_TARGET=... python tests/fuzz/<harness> <file>`.

Each target is one process that runs for a fixed time and touches no test database (the
upload harness brings its own SQLite one): `make test` runs them once, beside the other
tests of the PostgreSQL pass on its xdist workers, and the SQLite pass leaves them out
(tests/passes.py). Not marked e2e: the serial e2e pass is for the tests that start a portal
and several nodes, and one fuzzer beside one other test has the core it would have alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(600)

HERE = Path(__file__).resolve().parent
SECONDS = int(os.environ.get("CONSORTIUM_FUZZ_SECONDS", "20"))


@pytest.mark.parametrize(
    "harness, target",
    [
        ("fuzz_validate.py", "validate"),
        ("fuzz_validate.py", "upload"),
        ("fuzz_loaders.py", "loaders"),
        ("fuzz_portal_answers.py", "portal"),
        ("fuzz_aggregates.py", "aggregates"),
    ],
)
def test_the_fuzzer_finds_no_crash_hang_or_server_error(tmp_path, harness, target):
    corpus = tmp_path / "corpus"
    shutil.copytree(HERE / "corpus" / target, corpus)  # libFuzzer adds to it: keep ours clean
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / harness),
            f"-max_total_time={SECONDS}",
            "-timeout=10",  # one input taking longer is a hang
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        env={**os.environ, "FUZZ_TARGET": target, "FUZZ_WORK_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=SECONDS + 240,
    )
    found = [
        p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-"))
    ]
    assert result.returncode == 0 and not found, (found, result.stderr[-6000:])
    runs = re.search(r"stat::number_of_executed_units: (\d+)", result.stderr)
    assert runs and int(runs.group(1)) > len(list((HERE / "corpus" / target).iterdir()))

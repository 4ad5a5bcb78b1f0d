"""The portal's bound on banks per sum and the node's headroom assumption are one number."""

from __future__ import annotations

import os
import subprocess
import sys

from django.conf import settings

from bank_node.counts import MAX_BANKS_PER_SUM


def test_the_portal_default_and_ceiling_are_the_nodes_max_banks_per_sum():
    assert settings.MAX_BANKS_PER_SUM == MAX_BANKS_PER_SUM
    assert settings.MAX_BANKS_PER_ROUND <= MAX_BANKS_PER_SUM


def _settings_with(value: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONSORTIUM_MAX_BANKS_PER_ROUND": value}
    code = "import consortium.settings as s; print(s.MAX_BANKS_PER_ROUND)"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_max_banks_per_round_above_what_nodes_leave_headroom_for_is_refused_at_start():
    refused = _settings_with(str(MAX_BANKS_PER_SUM + 1))
    assert refused.returncode != 0
    assert f"CONSORTIUM_MAX_BANKS_PER_ROUND must be at most {MAX_BANKS_PER_SUM}" in refused.stderr
    allowed = _settings_with("100")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.strip() == "100"

"""The README's promote → serve → curl lines, run as written against a node with versions.

The node holds round-7 and round-8 (round-8 promoted automatically, as the newer). Each
line of the README's block runs in the node's directory: ``openssl`` and ``curl`` through
``bash`` as written, ``bank-node`` as ``python -m bank_node.cli`` with the same
arguments. The one change: ``bank-node serve`` gets ``--port`` on a free port, and the
``curl`` line that port instead of the default 8780 (asserted to be the default).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bank_node.baseline import default_policy
from bank_node.registry_node import NodeRegistry
from bank_node.serve_config import DEFAULT_PORT
from bank_node.training import Normalizer
from models.features import FEATURE_NAMES
from models.nets import build_model
from models.vector import model_to_vector
from simulation.processes import free_port, wait_ready
from tests.bank_node.registry_world import STATS_ROUND, node_config, node_toml, published

ROOT = Path(__file__).resolve().parents[2]
SECTION = "Real-time scoring with the model the bank chose"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """Stand in for the repo-wide autouse fixture of that name: no Django here."""


def _blocks() -> tuple[str, list[str], str]:
    """The ``toml`` block, the ``sh`` block's commands (continuations joined), its answer."""
    part = (ROOT / "README.md").read_text().split(SECTION, 1)[1]
    toml = re.search(r"```toml\n(.*?)```", part, re.S)
    sh = re.search(r"```sh\n(.*?)```", part, re.S)
    assert toml is not None and sh is not None, f"README: {SECTION!r} lost its blocks"
    text = sh.group(1)
    answer = " ".join(line[1:].strip() for line in text.splitlines() if line.startswith("#"))
    commands: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        pending += line.split("   #")[0].strip() + "\n"
        # A command goes on while a backslash ends the line or a quote is still open.
        if not pending.rstrip("\n").endswith("\\") and pending.count("'") % 2 == 0:
            commands.append(pending.strip())
            pending = ""
    assert not pending, f"README: an unfinished command: {pending}"
    return toml.group(1), commands, answer


def _node(tmp_path: Path) -> Path:
    """A node directory whose registry holds round-7 and round-8 (promoted), and node.toml."""
    state = tmp_path / "state"
    state.mkdir()
    n = len(FEATURE_NAMES)
    moments = np.concatenate([np.full(n, 0.3), np.full(n, 0.5)])
    normalizer = Normalizer.from_moments(moments, STATS_ROUND, rows=9)
    (state / f"normalization-round-{STATS_ROUND}.json").write_text(normalizer.to_json())
    data_file = tmp_path / "alpha.csv"
    data_file.write_text("")  # never read: no round is played, nothing is scored offline
    registry = NodeRegistry(node_config(state, data_file), None)
    policy = default_policy()
    weights = model_to_vector(build_model(policy.model_spec, n))
    for number in (7, 8):
        rnd = published(number, policy)
        registry.evaluated(rnd, weights, 0.41, {"auprc": 0.5}, None)
    assert registry.registry.promoted() == "round-8"
    return node_toml(tmp_path, data_file)


def _run(line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def _node_cli(line: str) -> list[str]:
    argv = shlex.split(line)
    assert argv[0] == "bank-node", line
    return [sys.executable, "-m", "bank_node.cli", *argv[1:]]


@pytest.mark.timeout(600)
def test_the_readme_promotes_a_version_serves_it_and_scores_one_transaction_with_curl(
    tmp_path: Path,
):
    toml, commands, answer = _blocks()
    token_line, promote_line, serve_line, curl_line = commands
    config = _node(tmp_path)
    config.write_text(config.read_text() + "\n" + toml)
    assert f"127.0.0.1:{DEFAULT_PORT}/" in curl_line  # the default port, as the README says

    assert _run(token_line, tmp_path).returncode == 0
    assert (tmp_path / "serve.token").stat().st_mode & 0o777 == 0o600
    promoted = subprocess.run(_node_cli(promote_line), cwd=tmp_path, env=ENV,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert promoted.returncode == 0, promoted.stderr
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as handle:
        serve = subprocess.Popen([*_node_cli(serve_line), "--port", str(port)], cwd=tmp_path,
                                 env=ENV, stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}", timeout=240, proc=serve, log=log)
        done = _run(curl_line.replace(f":{DEFAULT_PORT}/", f":{port}/"), tmp_path)
    finally:
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(timeout=60)
    assert code == 0, log.read_text()[-2000:]

    got, shown = json.loads(done.stdout), json.loads(answer)
    assert set(got) == set(shown) and set(got["model"]) == set(shown["model"])
    assert got["model"] == shown["model"]  # round-7 as promoted, not the newer round-8
    assert 0.0 <= got["score"] <= 1.0 and got["alert"] == (got["score"] >= 0.41)
    assert (got["index"], got["id"]) == (shown["index"], shown["id"])

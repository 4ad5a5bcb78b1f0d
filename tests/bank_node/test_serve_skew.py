"""Training/serving skew: a CSV scored in batch and streamed through `bank-node serve` agree.

The same transactions go through `bank-node score` (features from the whole file) and,
one request per transaction in timestamp order, through a running `bank-node serve` over
real HTTP (features from the account state it keeps). Their scores must agree to 1e-6.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bank_node.cli import main
from bank_node.data import load_transactions
from bank_node.schemas import TIMESTAMP_FORMAT
from bank_node.scoring_model import load_scoring_model
from models.features import FEATURE_NAMES, compute_features
from simulation.world import generate_world
from tests.bank_node.serve_helpers import TOKEN, save_test_model, write_node_config

# Several processes over real HTTP: an end-to-end test (it runs with the e2e suite).
pytestmark = pytest.mark.e2e

ROWS = 1_500
FIELDS = ["from_bank", "from_account", "to_bank", "to_account", "receiving_currency",
          "payment_currency", "payment_format"]  # fmt: skip


@pytest.fixture(scope="module")
def bank_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first rows of one bank of the synthetic world: a few days of shared accounts."""
    out = tmp_path_factory.mktemp("world")
    manifest = generate_world(out, n_banks=3, preset="tiny", seed=5)
    first = next(iter(manifest["banks"].values()))
    lines = (out / first["file"]).read_text().splitlines()
    path = out / "slice.csv"
    path.write_text("\n".join(lines[: ROWS + 1]) + "\n")
    return path


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, bank_csv: Path
) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """One `bank-node serve` process for the module (its start-up imports the ML stack)."""
    tmp_path = tmp_path_factory.mktemp("serve")
    model_dir = save_test_model(tmp_path / "model", threshold=0.5)
    config = write_node_config(tmp_path, bank_csv, model_dir=model_dir)
    process = subprocess.Popen(
        [sys.executable, "-m", "bank_node.cli", "serve", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        started = json.loads(process.stdout.readline())
        assert started["model_loaded"] is True
        yield process, int(started["listening"].rsplit(":", 1)[1]), config
    finally:
        process.terminate()
        process.wait(timeout=30)


def _post(connection: http.client.HTTPConnection, payload: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(payload)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    connection.request("POST", "/score", body, headers)
    response = connection.getresponse()
    answer = dict(json.loads(response.read()))
    assert response.status == 200, answer
    return answer


def _as_sent(row: Any) -> dict[str, Any]:
    sent = {name: getattr(row, name) for name in FIELDS}
    sent["timestamp"] = row.timestamp.strftime(TIMESTAMP_FORMAT)
    sent["amount_paid"], sent["amount_received"] = row.amount_paid, row.amount_received
    return sent


def test_batch_and_streamed_scores_of_the_same_transactions_agree(server, bank_csv, tmp_path):
    _, port, config = server
    model_dir = config.parent / "model"
    frame = load_transactions(bank_csv)
    seen_before = compute_features(frame)[:, FEATURE_NAMES.index("src_first_seen")] == 0
    assert seen_before.mean() > 0.25  # the slice has history: the state matters

    out = tmp_path / "batch.csv"
    argv = ["score", "--config", str(config), "--model", str(model_dir), "--input", str(bank_csv)]
    assert main([*argv, "--out", str(out)]) == 0
    batch = {int(r["line"]): float(r["score"]) for r in csv.DictReader(out.open())}

    order = np.argsort(frame["timestamp"].to_numpy(), kind="stable")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    streamed = {}
    for position in order:
        row = frame.iloc[position]
        streamed[int(position) + 2] = _post(connection, _as_sent(row))["score"]
    assert len(streamed) == len(batch) == ROWS
    worst = max(abs(streamed[line] - batch[line]) for line in batch)
    # score writes six decimals: 5e-7 of rounding, within the 1e-6 asked for.
    assert worst <= 1e-6
    # Unrounded, from the same loader `score` uses: closer still.
    exact = load_scoring_model(model_dir).score_frame(frame)
    assert np.max(np.abs(np.array([streamed[i + 2] for i in range(ROWS)]) - exact)) <= 1e-6


def test_sighup_reloads_the_model_at_once(server):
    process, port, config = server
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    save_test_model(config.parent / "model", threshold=0.875, seed=3)
    process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 3  # well inside the 5 s between file checks
    while time.monotonic() < deadline:
        connection.request("GET", "/readyz")
        ready = json.loads(connection.getresponse().read())
        if ready["model"]["threshold"] == 0.875:
            return
        time.sleep(0.05)
    pytest.fail(f"the model was not reloaded after SIGHUP: {ready}")

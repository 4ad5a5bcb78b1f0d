"""A bank node's metrics endpoint, its health checks, and the counters behind them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import REGISTRY

from bank_node import metrics as node_metrics
from bank_node.portal_client import BankClient
from protocol import BankInfo


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def node_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    data = tmp_path / "transactions.csv"
    data.write_text("Timestamp,From Bank\n")
    state = tmp_path / "state"
    state.mkdir()
    server = node_metrics.start_metrics_server(
        0, bank="bank-alpha", state_dir=state, data_file=data, addr="127.0.0.1"
    )
    try:
        yield f"http://127.0.0.1:{server.server_port}", data
    finally:
        server.shutdown()
        server.server_close()


def test_the_node_serves_its_metrics_with_the_bank_it_speaks_for(node_server):
    url, _ = node_server
    text = requests.get(f"{url}/metrics", timeout=5).text
    assert 'bank_node_info{bank="bank-alpha",version=' in text
    for name in (
        "bank_node_rounds_joined_total",
        'bank_node_rounds_missed_total{reason="not_submitted"}',
        'bank_node_local_update_duration_seconds_count{kind="training"}',
        "bank_node_global_model_auprc",
        "bank_node_encrypt_duration_seconds_count",
        "bank_node_decrypt_duration_seconds_count",
        "bank_node_upload_bytes_total",
        "bank_node_portal_retries_total",
        "bank_node_last_successful_round_timestamp_seconds",
        "bank_node_privacy_epsilon_spent ",
    ):
        assert name in text, name


def test_healthz_answers_and_readyz_checks_state_and_data(node_server):
    url, data = node_server
    assert requests.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{url}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"state_dir": "ok", "data_file": "ok"}
    data.unlink()
    gone = requests.get(f"{url}/readyz", timeout=5)
    assert gone.status_code == 503
    assert gone.json()["checks"]["data_file"] == "missing or unreadable"
    assert requests.get(f"{url}/", timeout=5).status_code == 404


def test_a_round_seen_open_that_closes_without_our_update_is_missed_once():
    before = value("bank_node_rounds_missed_total", reason="not_submitted")
    node_metrics.round_seen_open(9001)
    node_metrics.round_listed(9001, "published", submitted=False, skipped=False)
    node_metrics.round_listed(9001, "published", submitted=False, skipped=False)
    assert value("bank_node_rounds_missed_total", reason="not_submitted") == before + 1


@pytest.mark.parametrize(
    ("rnd", "submitted", "skipped", "reason", "delta"),
    [
        ({"number": 9101, "state": "failed"}, False, True, "skipped", 1),
        ({"number": 9102, "state": "published"}, True, False, "not_submitted", 0),
        ({"number": 9103, "state": "open"}, False, False, "not_submitted", 0),
    ],
    ids=["sat-out", "contributed", "still-open"],
)
def test_only_closed_rounds_without_our_update_count_as_missed(
    rnd, submitted, skipped, reason, delta
):
    before = value("bank_node_rounds_missed_total", reason=reason)
    node_metrics.round_seen_open(rnd["number"])
    node_metrics.round_listed(rnd["number"], rnd["state"], submitted=submitted, skipped=skipped)
    assert value("bank_node_rounds_missed_total", reason=reason) == before + delta


def test_a_round_the_node_never_saw_open_is_not_its_miss():
    before = value("bank_node_rounds_missed_total", reason="not_submitted")
    node_metrics.round_listed(9201, "published", submitted=False, skipped=False)
    assert value("bank_node_rounds_missed_total", reason="not_submitted") == before


def test_an_evaluated_global_model_sets_auprc_round_and_last_success(tmp_path):
    node_metrics.global_model_evaluated(4, {"auprc": 0.42, "base_rate": 0.01})
    assert value("bank_node_global_model_auprc") == pytest.approx(0.42)
    assert value("bank_node_global_model_round") == 4
    assert value("bank_node_last_successful_round_timestamp_seconds") > 1.7e9
    update = tmp_path / "u.ckks"
    update.write_bytes(b"x" * 1234)
    joined, sent = value("bank_node_rounds_joined_total"), value("bank_node_upload_bytes_total")
    node_metrics.uploaded(update)
    assert value("bank_node_rounds_joined_total") == joined + 1
    assert value("bank_node_upload_bytes_total") == sent + 1234


BANK_A = {
    "slug": "a",
    "name": "A",
    "status": "active",
    "signing_public_key": "",
    "signing_key_registered_at": None,
    "created_at": "2026-12-01T12:00:00Z",
    "status_changed_at": None,
}


def test_portal_client_retries_are_counted():
    answers = iter([503, 200])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = next(answers)
            body = json.dumps({"message": "busy"} if status == 503 else BANK_A).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        before = value("bank_node_portal_retries_total")
        client = BankClient(f"http://127.0.0.1:{server.server_port}", "cred", max_retries=2)
        assert client.me() == BankInfo.from_dict(BANK_A)
        assert client.retries_made == 1
        assert value("bank_node_portal_retries_total") == before + 1
    finally:
        server.shutdown()
        server.server_close()

"""benchmarks/serve.py at CI size: an open-loop run against an in-process service."""

from __future__ import annotations

import threading
from pathlib import Path
from types import ModuleType

import pytest

from bank_node.serve_http import make_server
from tests.bank_node.serve_helpers import make_service
from tests.benchmarks.conftest import _load_script


@pytest.fixture(scope="module")
def serve_bench() -> ModuleType:
    return _load_script("serve")


@pytest.fixture
def url(tmp_path: Path, serve_bench: ModuleType):
    service = make_service(tmp_path, token=serve_bench.TOKEN)  # the token its client sends
    server = make_server(service, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_two_hundred_requests_are_answered_and_p50_is_at_most_p99(serve_bench, url):
    figures = serve_bench.run(url, rate=100, seconds=2, batch=1, connections=4, warmup=50)
    assert figures.requests == figures.transactions == 200
    assert figures.errors == 0
    assert 0 < figures.p50_ms <= figures.p90_ms <= figures.p99_ms <= figures.max_ms
    assert figures.achieved_tps > 0


def test_a_batched_run_counts_transactions_not_requests(serve_bench, url):
    figures = serve_bench.run(url, rate=200, seconds=1, batch=20, connections=2, warmup=0)
    assert figures.requests == 10 and figures.transactions == 200 and figures.errors == 0

"""benchmarks/serve.py at CI size: open-loop runs from a client process against an in-process service."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from bank_node.serve import Response
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


def test_the_server_cpu_and_the_load_average_are_reported(serve_bench, url):
    # The server runs in this process and the client in its own, so this process's CPU
    # time during the run is the server's.
    figures = serve_bench.run(
        url, rate=100, seconds=1, batch=1, connections=2, warmup=0, pid=os.getpid()
    )
    assert figures.server_cpu_ms_per_tx > 0
    assert figures.client_cpu_ms_per_request > 0
    assert figures.load_start >= 0 and figures.load_end >= 0


class _Slow:
    """A service answering each request after 50 ms: 20 a second at most on one connection."""

    def handle(self, method, path, headers, read_body):
        read_body(int(headers["content-length"]))
        time.sleep(0.05)
        return Response(200, b"{}")


def test_latency_runs_from_the_scheduled_send_so_a_queue_is_charged(serve_bench):
    server = make_server(_Slow(), "127.0.0.1", 0)  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        payloads = [b"{}"] * 20
        start, done, _ = serve_bench.offer(url, payloads, per_second=50, connections=1)
    finally:
        server.shutdown()
        server.server_close()
    figures = serve_bench.figures(start, done, offered=50, batch=1, transactions=20,
                                  cpu_seconds=0, client_cpu_seconds=0, load=(0, 0))  # fmt: skip
    # Due every 20 ms, answered every 50 ms: the last waits ~1 s - 0.4 s = ~0.6 s. Timed
    # from when it was sent instead, every request would look like 50 ms.
    assert figures.max_ms > 400
    assert figures.p50_ms > 100

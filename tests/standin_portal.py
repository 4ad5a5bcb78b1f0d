"""A stand-in portal for the node's client tests: real HTTP, answers chosen by the test."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bank_node.portal_client import BankClient

# (method, path, headers, body) -> (status, JSON body bytes)
Answer = Callable[[str, str, Mapping[str, str], bytes], tuple[int, bytes]]


@contextmanager
def standin_portal(answer: Answer) -> Iterator[BankClient]:
    """Serve ``answer`` for every GET, PUT and POST; yield a client that never retries."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, payload = answer(self.command, self.path, dict(self.headers.items()), body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield BankClient(f"http://127.0.0.1:{server.server_port}", "cred", max_retries=0)
    finally:
        server.shutdown()

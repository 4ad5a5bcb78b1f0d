"""The scheduler's own HTTP endpoint: ``/metrics``, ``/healthz`` and ``/readyz`` in a thread."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.db import connection
from django.http import HttpRequest
from prometheus_client import REGISTRY, make_wsgi_app

from consortium.api.health import readyz

log = logging.getLogger(__name__)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape or probe is noise


def _scheduler_ready() -> tuple[int, bytes]:
    """The web tier's readiness check: database reachable, blob storage writable."""
    try:
        response = readyz(HttpRequest())
    finally:
        connection.close()  # each probe runs in a thread of its own: leave no connection
    return response.status_code, response.content


def health_app(
    ready: Callable[[], tuple[int, bytes]],
) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """A WSGI app: /healthz (the process answers), /readyz (``ready()``), else metrics."""
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            status, body = (200, json.dumps({"status": "ok"}).encode())
            if path == "/readyz":
                status, body = ready()
            phrase = "OK" if status == 200 else "Service Unavailable"
            start_response(f"{status} {phrase}", [("Content-Type", "application/json")])
            return [body]
        if path != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics, /healthz or /readyz\n"]
        return metrics_app(environ, start_response)

    return app


def scheduler_serve(port: int, addr: str = "0.0.0.0") -> WSGIServer:  # noqa: S104
    """Serve the scheduler's /metrics, /healthz and /readyz on ``addr:port`` in a thread."""
    server = make_server(
        addr,
        port,
        health_app(_scheduler_ready),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("scheduler metrics on http://%s:%s/metrics", addr, server.server_port)
    return server

"""The scoring service behind the standard library's threading HTTP server (HTTP/1.1, keep-alive).

Chosen over gunicorn after measuring both (benchmarks/RESULTS.md, "serve"): the account
state has one writer, so the service is one process either way, and a WSGI server's worker
model brings nothing but a second process tree. SIGHUP reloads the model; SIGTERM and
SIGINT stop the server after the requests in flight.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

from bank_node import serve_metrics as metrics
from bank_node.serve import ScoringService, json_response

log = logging.getLogger("bank_node.serve")

RELOAD_CHECK_SECONDS = 5.0  # how often the model files and the promoted pointer are checked
# Group commit: the account state of the batches answered in the last COMMIT_SECONDS is
# committed at once (one commit per request cost more than the features); what a crash of
# the process can lose (docs/serving.md, "State").
COMMIT_SECONDS = 0.02
# How often the write-ahead log is copied into the state file, off the request path.
CHECKPOINT_SECONDS = 1.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client streaming transactions reuses one
    # The status line, headers and body leave in one write (flushed after each request by
    # handle_one_request) with Nagle off: written apart, the body waited for the client's
    # delayed ACK of the headers, about 40 ms on every answer.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    # A client that stops sending (an idle keep-alive, a body shorter than announced)
    # frees its thread after this many seconds.
    timeout = 30
    server: _Server

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        started = time.perf_counter()
        path = self.path.split("?", 1)[0]
        try:
            headers = {name.lower(): value for name, value in self.headers.items()}
            response = self.server.service.handle(self.command, self.path, headers, self.rfile.read)
        except (TimeoutError, ConnectionError):
            metrics.ERRORS.labels("connection").inc()
            self.close_connection = True  # the client went away or stalled mid-body
            return
        except Exception:
            log.exception("internal error answering %s %s", self.command, path)
            metrics.ERRORS.labels("internal").inc()
            message = {"message": "internal error; the service log has the details", "extra": {}}
            response = json_response(500, message)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        if response.status >= 400 and self.command == "POST":
            # The body may be unread (a 401 or 413 answers before reading it): do not let
            # its bytes be taken for the next request on this connection.
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        label = path if path in {"/score", "/healthz", "/readyz", "/metrics"} else "other"
        elapsed = time.perf_counter() - started
        metrics.REQUEST_SECONDS.labels(label, f"{response.status // 100}xx").observe(elapsed)
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: object) -> None:
        if log.isEnabledFor(logging.DEBUG):  # called for every answer: format only if shown
            log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connections under a burst of new clients.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], service: ScoringService) -> None:
        self.service = service
        super().__init__(address, _Handler)


def make_server(service: ScoringService, host: str, port: int) -> _Server:
    """A server bound to (host, port) (port 0: any free one; see ``server_address``)."""
    return _Server((host, port), service)


def _watch(service: ScoringService, stop: threading.Event) -> None:
    while not stop.wait(RELOAD_CHECK_SECONDS):
        service.models.reload_if_changed()


def _commit(service: ScoringService, stop: threading.Event) -> None:
    checkpointed = time.monotonic()
    while not stop.wait(COMMIT_SECONDS):
        service.flush()
        if time.monotonic() - checkpointed >= CHECKPOINT_SECONDS:
            service.checkpoint()
            checkpointed = time.monotonic()


def serve_forever(server: _Server) -> None:
    """Serve until SIGTERM or SIGINT; SIGHUP reloads the model. Main thread only.

    Commits are grouped (`COMMIT_SECONDS`); the last group is committed before it returns.
    """
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(server.service, stop), daemon=True)
    watcher.start()
    server.service.defer_commits()
    committer = threading.Thread(target=_commit, args=(server.service, stop), daemon=True)
    committer.start()

    def _reload(signum: int, frame: FrameType | None) -> None:
        log.info("SIGHUP: reloading the model")
        threading.Thread(target=server.service.models.load, daemon=True).start()

    def _stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGHUP, _reload)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.serve_forever()
    finally:
        stop.set()
        committer.join()
        server.server_close()
        server.service.flush()
        server.service.store.close()

"""Request middleware: every response counted by resolved view, method and status, and timed."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from consortium.metrics.definitions import HTTP_LATENCY, HTTP_REQUESTS

_STATIC_PREFIX = "/" + str(settings.STATIC_URL or "static/").lstrip("/")
# The method label takes what a client sends: any other method would mint a new series
# per made-up verb, so everything outside HTTP's own methods counts as "other".
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)


def method_label(method: str | None) -> str:
    """The request's method if HTTP defines it, else ``"other"``: a small, fixed set."""
    return method if method in KNOWN_METHODS else "other"


class RequestMetricsMiddleware:
    """Count every response by resolved view and status, and time it.

    First in MIDDLEWARE, so it also sees the 400s and 503s other middleware produce. The
    view label is the route name ("round-current", "admin:index", ...), "static" for
    static files, "unresolved" when no route matched: a small, fixed set, as is the
    method label (``method_label``).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.view_name:
            view = match.view_name
        elif request.path.startswith(_STATIC_PREFIX):
            view = "static"  # answered by WhiteNoise before any URL is resolved
        else:
            view = "unresolved"
        HTTP_REQUESTS.labels(view, method_label(request.method), str(response.status_code)).inc()
        HTTP_LATENCY.labels(view).observe(time.perf_counter() - started)
        return response

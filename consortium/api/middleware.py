"""Turn a lost database into a 503, and JSON nested too deep into a 400, outside DRF views too."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse

from consortium import metrics
from consortium.api.parsers import MAX_JSON_DEPTH

log = logging.getLogger(__name__)


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DatabaseError):
            log.warning("database error on %s: %s", request.path, exception)
            metrics.DB_ERRORS.labels("web").inc()
            response = JsonResponse(
                {"message": "the portal's database is unavailable; retry shortly", "extra": {}},
                status=503,
            )
            response["Retry-After"] = "5"
            return response
        return None


class DeepJSONMiddleware:
    """A 400 for JSON that Python's json module cannot decode without overflowing its stack.

    API bodies are bounded by :class:`consortium.api.parsers.BoundedJSONParser`; this catches
    the rest: JSON typed into a form field (a policy's ``model_spec`` in the portal or the
    back office), which Django decodes with plain ``json.loads``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        # Only the json decoder's own overflow: any other RecursionError is a bug, a 500.
        if not (isinstance(exception, RecursionError) and "JSON" in str(exception)):
            return None
        log.warning("JSON nested too deeply on %s", request.path)
        return JsonResponse(
            {
                "message": f"JSON nested too deeply; at most {MAX_JSON_DEPTH} levels are accepted",
                "extra": {"limit": MAX_JSON_DEPTH},
            },
            status=400,
        )

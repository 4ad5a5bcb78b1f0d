"""Turn a lost database into a 503 with a message, outside DRF views too."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse

from consortium import metrics

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

"""Request guards outside DRF views: lost database -> 503, deep JSON -> 400, sign-in throttle."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from consortium import metrics
from consortium.api.parsers import MAX_JSON_DEPTH
from consortium.api.services import sign_in_failures_count, sign_in_source

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
    the rest: JSON typed into a form field (a policy's ``model_spec`` in the back office),
    which Django decodes with plain ``json.loads``.
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


class SignInThrottleMiddleware:
    """Refuse sign-in attempts from a source that failed too often this minute, unchecked.

    It runs before any password is hashed (django-axes and Django's backends hash one per
    attempt, on purpose slowly), so a flood of guesses, each for another username, cannot
    burn the portal's CPU. It counts per source address only: wrong passwords sent from
    elsewhere never refuse the operator's own address. django-axes still locks a username
    per address after a few failures.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.login_paths = {reverse("portal:login"), reverse("admin:login")}

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self._is_sign_in(request):
            limit = settings.SIGN_IN_FAILURES_PER_MINUTE
            if sign_in_failures_count(source=sign_in_source(request)) >= limit:
                return self._refuse(request, limit)
        return self.get_response(request)

    def _is_sign_in(self, request: HttpRequest) -> bool:
        if request.headers.get("Authorization", "").startswith("Basic "):
            return True
        return request.method == "POST" and request.path in self.login_paths

    def _refuse(self, request: HttpRequest, limit: int) -> HttpResponse:
        message = (
            f"too many failed sign-ins from this address (limit {limit} a minute); "
            "try again in a minute"
        )
        if request.path.startswith("/api/"):
            response: HttpResponse = JsonResponse(
                {"message": message, "extra": {"limit": limit}}, status=429
            )
        else:
            response = HttpResponse(message, status=429, content_type="text/plain")
        response["Retry-After"] = "60"
        return response

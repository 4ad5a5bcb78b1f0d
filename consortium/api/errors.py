"""One error shape for the whole API: ``{"message": str, "extra": {...}}``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Self

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, ValidationError
from django.db import DatabaseError, models
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from audit.services import audit_refusal
from consortium import metrics

log = logging.getLogger(__name__)


@dataclass
class Refusal:
    """The audit event a service wants for its refusal, written after the rollback."""

    action: str
    actor: str
    target: models.Model | None = None
    data: dict[str, Any] = field(default_factory=dict)
    recorded: bool = False


class ApplicationError(Exception):
    """A domain rule refused the request. Services raise it; the handler renders it.

    A service marks a refusal worth an audit event with :meth:`audited`; the one place that
    records it is :func:`refusal_record`, called by the API's exception handler and by the
    portal's and the back office's error paths once the service's transaction rolled back.
    """

    status_code: int = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, status_code: int | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra
        self.refusal: Refusal | None = None
        if status_code is not None:
            self.status_code = status_code

    def audited(
        self,
        *,
        action: str,
        actor: str,
        target: models.Model | None = None,
        data: dict[str, Any] | None = None,
    ) -> Self:
        """Ask for a ``*.refused`` audit event naming this refusal; returns ``self``.

        The first marking wins: an inner service knows the refusal best.
        """
        if self.refusal is None:
            self.refusal = Refusal(action, actor, target, dict(data or {}))
        return self


def refusal_record(exc: ApplicationError) -> None:
    """Write the audit event a service asked for (once), after its transaction rolled back."""
    refusal = exc.refusal
    if refusal is None or refusal.recorded:
        return
    audit_refusal(
        action=refusal.action,
        actor=refusal.actor,
        target=refusal.target,
        data=refusal.data,
        reason=exc.message,
    )
    refusal.recorded = True


class Conflict(ApplicationError):
    status_code = status.HTTP_409_CONFLICT


class NotFound(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND


class Forbidden(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN


def _flatten(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in detail.items())
    if isinstance(detail, list):
        return " ".join(_flatten(v) for v in detail)
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render every error as ``{"message", "extra"}`` with a 4xx/503 status."""
    if isinstance(exc, ApplicationError):
        try:
            refusal_record(exc)
        except DatabaseError as db_error:
            # The person still learns why they were refused; the trail's gap is logged.
            log.warning("refusal not audited, database error: %s", db_error)
            metrics.DB_ERRORS.labels("web").inc()
        return Response({"message": exc.message, "extra": exc.extra}, status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            {
                "message": f"request body larger than the {limit}-byte limit",
                "extra": {"limit": limit},
            },
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, ValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DatabaseError):
        log.warning("database error: %s", exc)
        metrics.DB_ERRORS.labels("web").inc()
        return Response(
            {"message": "the portal's database is unavailable; retry shortly", "extra": {}},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    fields = detail if isinstance(detail, dict) and "detail" not in detail else {}
    message = _flatten(
        detail.get("detail") if isinstance(detail, dict) and "detail" in detail else detail
    )
    response.data = {"message": message, "extra": {"fields": fields} if fields else {}}
    return response

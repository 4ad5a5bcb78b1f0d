"""The web tier's ``/metrics`` view, guarded by a bearer token or an address allow-list."""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from consortium.metrics.collector import exposition


def _client_allowed(request: HttpRequest) -> bool:
    try:
        addr = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in settings.METRICS_ALLOWED_NETWORKS)


def _denied(message: str, status: int) -> JsonResponse:
    response = JsonResponse({"message": message, "extra": {}}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus exposition, outside the API and its credentials.

    With ``CONSORTIUM_METRICS_TOKEN`` (or ``_FILE``) set, a scrape must send
    ``Authorization: Bearer <token>``; without one, only clients in
    ``CONSORTIUM_METRICS_ALLOWED_CIDRS`` (default: loopback) may scrape.
    """
    token: str = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            return _denied("send the metrics token as 'Authorization: Bearer <token>'", 401)
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            return _denied("wrong metrics token", 403)
    elif not _client_allowed(request):
        return _denied(
            "metrics are served only to CONSORTIUM_METRICS_ALLOWED_CIDRS or with the metrics token",
            403,
        )
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)

"""Rate limits on the API: uploads per bank, counted in the database cache.

Sign-in attempts are limited by django-axes (see settings); this module covers what DRF
throttles: a bank node's uploads.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import caches
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from consortium.api.auth import BankPrincipal


class BankUploadThrottle(SimpleRateThrottle):
    """At most ``DEFAULT_THROTTLE_RATES["upload"]`` uploads per bank, over all workers."""

    scope = "upload"

    @property
    def cache(self) -> Any:  # type: ignore[override]
        # Shared by every worker and replica; the default cache is per process.
        return caches["throttle"]

    def get_rate(self) -> str | None:
        # Read at request time, not import time, so a changed setting takes effect. The
        # stubs type rates as numbers; DRF's rates are strings such as "30/min".
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        return None if rate is None else str(rate)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.user, BankPrincipal):
            return None  # the upload view admits banks only; nothing else to count
        return self.cache_format % {"scope": self.scope, "ident": f"bank-{request.user.bank.pk}"}

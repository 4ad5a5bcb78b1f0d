"""A system check: a configured portal signing key must be usable before rounds run.

Rounds sign a checkpoint when they close, in the same transaction; without a usable key
no round could close. ``migrate`` (the Helm hook Job) and the scheduler run Django's
checks first, so a missing Secret mount stops the deploy instead of stalling rounds.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from audit.portal_key import portal_signing_key


def portal_key_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if getattr(settings, "PORTAL_SIGNING_KEY_GENERATE", False):
        return []  # the embedded default creates its key on first use
    try:
        portal_signing_key()
    except ImproperlyConfigured as exc:
        return [
            checks.Error(
                str(exc),
                hint="Mount the portal's Ed25519 key (PEM, PKCS#8) at that path, or unset "
                "CONSORTIUM_PORTAL_SIGNING_KEY_FILE for the embedded default.",
                id="audit.E001",
            )
        ]
    return []

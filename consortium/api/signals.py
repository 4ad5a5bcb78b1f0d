"""Failed sign-ins go to the bounded security log, never to the audit hash chain."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import signals as auth_signals

from consortium.api.services import sign_in_failure_record, sign_in_source


def sign_in_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    # Django has already masked the password in ``credentials``; we keep only the name.
    sign_in_failure_record(
        source=sign_in_source(request),
        username=str(credentials.get("username", "")),
        path=str(getattr(request, "path", "") or ""),
    )


def connect() -> None:
    auth_signals.user_login_failed.connect(sign_in_failed, dispatch_uid="api.sign_in_failed")

"""``Idempotency-Key`` on the API's POSTs: a retried request answered once, as payment APIs do.

A client that timed out cannot tell whether its POST ran. It sends the same random key on
every attempt of one logical request (``bank_node.portal_client`` does for every POST);
the portal keeps the first successful answer for a day (``services.idempotent_*``) and
gives a retry that answer again, status and body, instead of creating a second policy
version, bank or signature. The same key with another path or body is a 422. Keys are
per caller: one bank's key means nothing for another bank or for an operator.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from consortium.api import services
from consortium.api.auth import BankPrincipal
from consortium.api.errors import ApplicationError, Conflict
from consortium.api.models import IdempotentRequest

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# A random UUID is 36 characters. A short key could be found by trying keys against its
# stored digest, and the stored answer opened with it; over 200 is not a key but a payload.
KEY_LENGTH = (16, 200)

Handler = Callable[..., Response]


def idempotent(handler: Handler) -> Handler:
    """Make a view's ``post`` answer a retry with the same ``Idempotency-Key`` only once."""

    @functools.wraps(handler)
    def post(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key, caller = request.headers.get(HEADER), _caller(request)
        if key is None or not caller:
            return handler(view, request, *args, **kwargs)
        _check(key)
        digest = request_digest(request)
        with transaction.atomic():
            claimed = _claim(caller, key, digest)
            if isinstance(claimed, services.Replay):
                headers = {REPLAYED_HEADER: "true"}
                return Response(claimed.body, claimed.status_code, headers=headers)
            response = handler(view, request, *args, **kwargs)
            _keep(claimed, key, response)
        return response

    post.idempotent = True  # type: ignore[attr-defined]
    return post


def _claim(caller: str, key: str, digest: str) -> IdempotentRequest | services.Replay:
    """The first answer to this key, or the key taken for this request."""
    replay = services.idempotent_replay(caller=caller, key=key, request_digest=digest)
    if replay is not None:
        return replay
    try:
        with transaction.atomic():
            return services.idempotent_claim(caller=caller, key=key, request_digest=digest)
    except IntegrityError:  # an earlier attempt with this key committed while we waited
        replay = services.idempotent_replay(caller=caller, key=key, request_digest=digest)
    if replay is None:
        # Only when the first attempt's answer vanished in between (expired, or pruned).
        raise Conflict(f"another request with this {HEADER} ran at the same time; retry it")
    return replay


def _keep(row: IdempotentRequest, key: str, response: Response) -> None:
    if 200 <= response.status_code < 300:
        body = JSONRenderer().render(response.data)
        services.idempotent_record(row=row, key=key, status_code=response.status_code, body=body)
    else:  # an answer that changed nothing: a retry runs the request again
        row.delete()


def _caller(request: Request) -> str:
    """Whose keys these are: a bank, or a signed-in person; "" for anyone else."""
    user = request.user
    if isinstance(user, BankPrincipal):
        return f"bank:{user.bank.pk}"
    if getattr(user, "is_authenticated", False):
        return f"user:{user.pk}"
    return ""


def _check(key: str) -> None:
    low, high = KEY_LENGTH
    if not (low <= len(key) <= high and key.isascii() and key.isprintable() and " " not in key):
        raise ApplicationError(
            f"{HEADER} must be {low} to {high} printable ASCII characters without spaces "
            "(a random UUID is one), the same on every retry of one request",
            header=HEADER,
        )


def request_digest(request: Request) -> str:
    """SHA-256 over the method, the path with its query and the body as canonical JSON."""
    body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=str)
    text = f"{request.method}\n{request.get_full_path()}\n{body}"
    return hashlib.sha256(text.encode()).hexdigest()

"""Writes of the API plumbing: the security log, the sign-in failure counter, idempotent POSTs."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from axes.helpers import get_client_ip_address
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.cache import caches
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from consortium.api.errors import ApplicationError
from consortium.api.models import IdempotentRequest, SignInFailure


def _minute(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


def sign_in_source(request: Any) -> str:
    """The client address, as django-axes sees it (one notion of "source" for both limits)."""
    return (get_client_ip_address(request) if request is not None else None) or ""


def sign_in_failures_key(source: str, now: datetime) -> str:
    """Cache key of the failures from ``source`` in the minute of ``now``."""
    return f"signin-failures:{source}:{_minute(now):%Y%m%d%H%M}"


def sign_in_failures_count(*, source: str, now: datetime | None = None) -> int:
    """Failed sign-ins from ``source`` in the current and the previous minute, over every worker.

    Two buckets, not one: with the current minute alone a source could fail ``limit - 1`` times
    at hh:mm:59 and ``limit - 1`` more a second later, and a count taken just after the
    boundary would forget the first burst. Summing the previous minute refuses any ``limit``
    failures less than a minute apart (and some up to two minutes apart: the safe side).
    """
    now = now or timezone.now()
    keys = [
        sign_in_failures_key(source, now - timedelta(minutes=1)),
        sign_in_failures_key(source, now),
    ]
    return sum(int(v) for v in caches["throttle"].get_many(keys).values())


def sign_in_failure_record(
    *, source: str, username: str, path: str, now: datetime | None = None
) -> SignInFailure:
    """Count one failed sign-in: the per-source counter and the bounded security log."""
    now = now or timezone.now()
    cache = caches["throttle"]
    key = sign_in_failures_key(source, now)
    cache.add(key, 0, timeout=180)  # outlives the next minute, which still counts it
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr: this failure starts the count
        cache.set(key, 1, timeout=180)
    with transaction.atomic():
        row, created = SignInFailure.objects.get_or_create(
            source=source,
            username=username[:150],
            minute=_minute(now),
            defaults={"last_at": now, "last_path": path[:200]},
        )
        if not created:
            SignInFailure.objects.filter(pk=row.pk).update(
                count=F("count") + 1, last_at=now, last_path=path[:200]
            )
        else:
            _prune(row.pk)
    return row


def _prune(newest_pk: int) -> None:
    # Keys only grow, so everything more than the cap below the newest row is older than
    # the newest ``cap`` rows: one indexed delete, whatever the table's size.
    cap = settings.SECURITY_LOG_MAX_ROWS
    if newest_pk > cap:
        SignInFailure.objects.filter(pk__lte=newest_pk - cap).delete()


# A retry comes within minutes (the node backs off up to 30 s between attempts, eight times);
# a day covers an operator re-running a command the next morning, and bounds the table.
IDEMPOTENCY_KEEP = timedelta(hours=24)


@dataclass(frozen=True)
class Replay:
    """The answer a request with this Idempotency-Key got the first time."""

    status_code: int
    body: Any


def _derived(label: bytes, key: str) -> bytes:
    return hashlib.sha256(b"consortium-idempotency-" + label + b"|" + key.encode()).digest()


def _fernet(key: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derived(b"answer", key)))


def idempotent_replay(
    *, caller: str, key: str, request_digest: str, now: datetime | None = None
) -> Replay | None:
    """The stored answer to this caller's key, None if there is none (or it expired).

    The same key sent with another request is a 422.
    """
    now = now or timezone.now()
    rows = IdempotentRequest.objects.filter(caller=caller, created_at__gte=now - IDEMPOTENCY_KEEP)
    row = rows.filter(key_digest=_derived(b"key", key).hex()).first()
    if row is None:
        return None
    if row.request_digest != request_digest:
        raise ApplicationError(
            "this Idempotency-Key was already used for a different request (another path or "
            "body); send a new key with every new request",
            status_code=422,
            idempotency_key_reused=True,
        )
    try:
        body = json.loads(_fernet(key).decrypt(bytes(row.response)))
    except InvalidToken as exc:  # only a row edited in the database gets here
        raise ApplicationError("the stored answer to this Idempotency-Key is unreadable") from exc
    return Replay(row.status_code, body)


def idempotent_claim(*, caller: str, key: str, request_digest: str) -> IdempotentRequest:
    """Take the caller's key for this request, before the request runs.

    Inserted first in the request's transaction so that a retry arriving while it runs
    waits on the unique (caller, key) index and then finds its answer (PostgreSQL raises
    ``IntegrityError`` in the retry once this transaction commits). Nobody sees the row
    before :func:`idempotent_record` fills it: both commit together or not at all.
    """
    key_digest = _derived(b"key", key).hex()
    # An expired answer to this key goes first: the key may run a request again.
    IdempotentRequest.objects.filter(
        caller=caller, key_digest=key_digest, created_at__lt=timezone.now() - IDEMPOTENCY_KEEP
    ).delete()
    return IdempotentRequest.objects.create(
        caller=caller,
        key_digest=key_digest,
        request_digest=request_digest,
        status_code=0,
        response=b"",
        created_at=timezone.now(),
    )


def idempotent_record(*, row: IdempotentRequest, key: str, status_code: int, body: bytes) -> None:
    """Keep the answer (its rendered JSON body) to replay it to a retry of the same request."""
    row.status_code = status_code
    row.response = _fernet(key).encrypt(body)
    row.save(update_fields=["status_code", "response"])


def idempotent_prune(*, now: datetime | None = None) -> int:
    """Forget the answers older than a day (the scheduler calls it every tick); how many."""
    cutoff = (now or timezone.now()) - IDEMPOTENCY_KEEP
    deleted, _ = IdempotentRequest.objects.filter(created_at__lt=cutoff).delete()
    return deleted

"""Writes of the API plumbing: the security log and the per-source sign-in failure counter."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from axes.helpers import get_client_ip_address
from django.conf import settings
from django.core.cache import caches
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from consortium.api.models import SignInFailure


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

"""The scheduler's timed walk of the audit chain, reported as gauges."""

from __future__ import annotations

import logging
import time

from audit.selectors import audit_chain_verify
from consortium.metrics.definitions import AUDIT_VERIFIED, AUDIT_VERIFIED_AT, AUDIT_VERIFIED_EVENTS

log = logging.getLogger(__name__)

_last_verification = -float("inf")


def audit_verify_if_due(interval_seconds: float) -> None:
    """Walk the whole audit chain at most every ``interval_seconds`` (0: never).

    It reads every event, so it runs in the scheduler on a timer, never per scrape.
    """
    global _last_verification
    now = time.monotonic()
    if interval_seconds <= 0 or now - _last_verification < interval_seconds:
        return
    check = audit_chain_verify()
    _last_verification = now
    AUDIT_VERIFIED.set(1 if check.ok else 0)
    AUDIT_VERIFIED_EVENTS.set(check.events)
    AUDIT_VERIFIED_AT.set_to_current_time()
    if not check.ok:
        log.error("audit chain broken at event %s: %s", check.first_bad_seq, check.reason)

"""A worker's short-lived memory of bank credentials it has just checked, for reads.

Every status poll used to look its bank up in the database. During a burst of uploads
PostgreSQL is busy with their transactions, and that one query was what a poll waited on
(docs/operations.md, "Uploads do not starve reads"). A credential that authenticated a
read is remembered here for ``CONSORTIUM_AUTH_CACHE_SECONDS`` (default 5 s), keyed by the
SHA-256 of the whole credential (never the credential itself), so a wrong secret with a
valid prefix never matches.

The bound: a bank suspended or revoked, or a credential replaced, is refused on reads at
most that many seconds later, by every worker; writes (every non-GET request) are always
checked against the database, so a suspended bank can never upload after its suspension
commits. A replaced credential's grace period is checked on every request, cached or not.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from consortium.members.models import Bank

# Entries kept at most: more banks than this polling at once only means more misses.
MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class Entry:
    """A bank row as read when its credential last authenticated, and when that was."""

    bank: Bank
    previous: bool
    stored_at: float


class BankCache:
    """Credential hash -> bank, each entry trusted for ``ttl`` seconds (0: never)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def get(self, key: str, ttl: float) -> tuple[Bank, bool] | None:
        """A copy of the cached bank row and whether it is the previous credential."""
        entry = self._entries.get(key)
        if entry is None or ttl <= 0:
            return None
        if self._clock() - entry.stored_at >= ttl:
            with self._lock:
                if self._entries.get(key) is entry:
                    del self._entries[key]
            return None
        # A copy: a view may change its bank object; other threads share the entry.
        return copy.copy(entry.bank), entry.previous

    def put(self, key: str, bank: Bank, previous: bool, ttl: float) -> None:
        if ttl <= 0:
            return
        now = self._clock()
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries = {k: e for k, e in self._entries.items() if now - e.stored_at < ttl}
                if len(self._entries) >= MAX_ENTRIES:
                    self._entries.clear()
            self._entries[key] = Entry(copy.copy(bank), previous, now)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# One per worker process; its threads share it.
bank_cache = BankCache()

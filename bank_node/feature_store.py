"""The scoring service's account state in one SQLite file (WAL), so that it survives a restart.

A `SqliteStore` is the durable `bank_node.online_features.StateStore`: one row per account
(its running sums, last-seen time, payee and payer counts), its events inside the longest
window (7 d) in their own table, and one row per counterparty pair with its count. Floats
are stored bit for bit (JSON's shortest repr and packed doubles round-trip exactly), so a
restarted service computes the same features as one that never stopped.

Only one process may write the file (the service holds a lock around every batch and the
chart runs one replica): the in-process cache of accounts is then always the truth, and a
read goes to the file only for an account not in the cache.

A batch of writes is a savepoint (`begin`, then `keep` or `undo`) inside a transaction that
`commit` makes durable, so that the service can answer several batches per commit (group
commit, docs/serving.md "State") and still undo one failed batch alone. `checkpoint` copies
the write-ahead log into the file from a connection of its own, so that its fsync does not
stall the writer when automatic checkpoints are off (`manual_checkpoints`).
"""

from __future__ import annotations

import json
import sqlite3
import struct
from collections import OrderedDict
from pathlib import Path

from bank_node.online_features import LONGEST_WINDOW, QUANTITIES, AccountState, Event
from models.features import FEATURE_NAMES

SCHEMA_VERSION = "1"
_RUNNING = struct.Struct(f"<{QUANTITIES}d")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (key TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    account TEXT NOT NULL, seq INTEGER NOT NULL, t INTEGER NOT NULL, running BLOB NOT NULL,
    PRIMARY KEY (account, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_time ON events (t);
CREATE TABLE IF NOT EXISTS pairs (
    src TEXT NOT NULL, dst TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (src, dst)
) WITHOUT ROWID;
"""


class StoreError(Exception):
    """The state file cannot be used (another feature set, another schema, unreadable)."""


def _scalars(state: AccountState) -> str:
    return json.dumps({
        "base": state.base, "sums": state.sums, "compensation": state.compensation,
        "z_sums": state.z_sums, "z_compensation": state.z_compensation,
        "last_seen": state.last_seen, "payees": state.payees, "payers": state.payers,
        "pruned": state.pruned,
    })  # fmt: skip


def _state(scalars: str, events: list[Event]) -> AccountState:
    raw = json.loads(scalars)
    base = tuple(raw["base"]) if raw["base"] is not None else None
    return AccountState(
        events=events, base=base, sums=raw["sums"], compensation=raw["compensation"],
        z_sums=raw["z_sums"], z_compensation=raw["z_compensation"],
        last_seen=raw["last_seen"], payees=raw["payees"], payers=raw["payers"],
        pruned=raw["pruned"],
    )  # fmt: skip


class SqliteStore:
    """Accounts, their recent events and counterparty pairs in one SQLite file."""

    def __init__(self, path: Path, *, cache_accounts: int = 100_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # One writer, several request threads: the service serialises every use with its lock.
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED")
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL under WAL: a crash of the process loses nothing committed; a power cut may
        # lose the last commits (their transactions then look new once more).
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self._check_meta()
        self.cache_accounts = cache_accounts
        # key -> (state, how many of its events the file holds: pruned + stored)
        self._cache: OrderedDict[str, tuple[AccountState, int]] = OrderedDict()
        self._pruned_at = self._read_pruned_at()
        self._checkpointer: sqlite3.Connection | None = None

    def _check_meta(self) -> None:
        expected = {"schema": SCHEMA_VERSION, "features": ",".join(FEATURE_NAMES)}
        stored = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        for key, value in expected.items():
            if key in stored and stored[key] != value:
                raise StoreError(
                    f"{self.path}: its account state was written for another {key} "
                    f"({stored[key][:60]!r}); move it away to start from empty history"
                )
        self.db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", expected.items())
        self.db.commit()

    def account(self, key: str) -> AccountState:
        cached = self._cache.get(key)
        if cached is None:
            cached = self._read(key)
            self._remember(key, cached)
        else:
            self._cache.move_to_end(key)
        return cached[0]

    def _read(self, key: str) -> tuple[AccountState, int]:
        row = self.db.execute("SELECT state FROM accounts WHERE key = ?", (key,)).fetchone()
        if row is None:
            return AccountState(), 0
        events = [
            Event(t, _RUNNING.unpack(running))
            for t, running in self.db.execute(
                "SELECT t, running FROM events WHERE account = ? ORDER BY seq", (key,)
            )
        ]
        state = _state(row[0], events)
        return state, state.pruned + len(events)

    def _remember(self, key: str, entry: tuple[AccountState, int]) -> None:
        self._cache[key] = entry
        while len(self._cache) > self.cache_accounts:
            self._cache.popitem(last=False)

    def put_account(self, key: str, state: AccountState) -> None:
        saved = self._cache[key][1] if key in self._cache else 0
        total = state.pruned + len(state.events)
        self.db.execute("INSERT OR REPLACE INTO accounts VALUES (?, ?)", (key, _scalars(state)))
        self.db.execute("DELETE FROM events WHERE account = ? AND seq < ?", (key, state.pruned))
        first_new = max(saved, state.pruned)
        self.db.executemany(
            "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?)",
            [
                (key, seq, event.t, _RUNNING.pack(*event.running))
                for seq, event in zip(
                    range(first_new, total), state.events[first_new - state.pruned :], strict=True
                )
            ],
        )
        self._remember(key, (state, total))

    def pair_count(self, src: str, dst: str) -> int:
        row = self.db.execute(
            "SELECT count FROM pairs WHERE src = ? AND dst = ?", (src, dst)
        ).fetchone()
        return int(row[0]) if row else 0

    def put_pair(self, src: str, dst: str, count: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO pairs VALUES (?, ?, ?)", (src, dst, count))

    def commit(self) -> None:
        self.db.commit()

    def rollback(self) -> None:
        """Undo the uncommitted writes and forget the cache, which may hold them."""
        self.db.rollback()
        self._cache.clear()
        self._pruned_at = self._read_pruned_at()

    def begin(self) -> None:
        """Start a batch whose writes `undo` takes back alone; `keep` ends it, `commit` saves."""
        if not self.db.in_transaction:
            # An outer transaction: releasing the outermost savepoint would commit.
            self.db.execute("BEGIN")
        self.db.execute("SAVEPOINT batch")

    def keep(self) -> None:
        """End the batch begun last, its writes pending until the next `commit`."""
        self.db.execute("RELEASE batch")

    def undo(self) -> None:
        """Take back the writes of the batch begun last (earlier batches stay pending)."""
        self.db.execute("ROLLBACK TO batch")
        self.db.execute("RELEASE batch")
        # The cache may hold the batch's states; the file (with this connection's pending
        # writes) holds the truth before it.
        self._cache.clear()
        self._pruned_at = self._read_pruned_at()

    def manual_checkpoints(self) -> None:
        """Stop the writer's automatic checkpoints: `checkpoint` is then called regularly."""
        self.db.execute("PRAGMA wal_autocheckpoint=0")

    def checkpoint(self) -> None:
        """Copy committed pages from the write-ahead log into the file, beside the writer."""
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self.path, check_same_thread=False)
        # PASSIVE: never waits for the writer, so the next call takes what this one left.
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def prune(self, now: int) -> int:
        """Drop every account's events older than the longest window before ``now``; uncommitted."""
        keys = [
            key
            for (key,) in self.db.execute(
                "SELECT DISTINCT account FROM events WHERE t <= ?", (now - LONGEST_WINDOW,)
            ).fetchall()
        ]
        for key in keys:
            state = self.account(key)
            state.prune(now)
            self.put_account(key, state)
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('pruned_at', ?)", (str(now),))
        self._pruned_at = now  # durable with the next commit, as the pruned events are
        return len(keys)

    def pruned_at(self) -> int | None:
        """The ``now`` of the last `prune`: no transaction before it can be scored right."""
        return self._pruned_at

    def _read_pruned_at(self) -> int | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'pruned_at'").fetchone()
        return int(row[0]) if row else None

    def check_writable(self) -> None:
        """Raise sqlite3.Error unless the file takes a write (the readiness check)."""
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('checked', datetime('now'))")
        self.db.commit()

    def close(self) -> None:
        """Close the file; writes not committed by then are lost (the caller commits first)."""
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.db.close()

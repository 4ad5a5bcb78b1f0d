"""Group commit of the scoring service's account state: durable at each flush, a failed batch undone alone."""

from __future__ import annotations

import signal
import sqlite3
import threading
from pathlib import Path

import pytest

from bank_node import serve_http
from bank_node.feature_store import SqliteStore
from bank_node.serve import ScoringService
from tests.bank_node.serve_helpers import make_service, post, transaction


def _pairs(path: Path) -> dict[tuple[str, str], int]:
    """The counterparty pairs another connection sees committed in the state file."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT src, dst, count FROM pairs").fetchall()
    return {(src.split("\x1f")[1], dst.split("\x1f")[1]): count for src, dst, count in rows}


@pytest.fixture
def deferred(tmp_path: Path) -> ScoringService:
    service = make_service(tmp_path)
    service.defer_commits()
    return service


def test_each_batch_is_committed_before_its_answer_by_default(tmp_path: Path):
    service = make_service(tmp_path)
    assert post(service, transaction(1)).status == 200
    assert _pairs(service.store.path) == {("A1", "B7"): 1}


def test_a_deferred_batch_is_answered_at_once_and_durable_after_the_flush(deferred):
    assert post(deferred, transaction(1)).status == 200
    assert _pairs(deferred.store.path) == {}
    deferred.flush()
    assert _pairs(deferred.store.path) == {("A1", "B7"): 1}


def test_a_failed_batch_is_undone_alone_and_earlier_pending_ones_are_kept(deferred, monkeypatch):
    assert post(deferred, transaction(1)).status == 200
    with monkeypatch.context() as patch:
        patch.setattr(SqliteStore, "put_account", _disk_error)
        assert post(deferred, transaction(2, to_account="C9")).status == 503
    assert post(deferred, transaction(3)).status == 200
    deferred.flush()
    # Two A1 -> B7 transactions counted, and nothing of the refused A1 -> C9.
    assert _pairs(deferred.store.path) == {("A1", "B7"): 2}


def _disk_error(*args: object) -> None:
    raise sqlite3.OperationalError("disk I/O error")


def test_serving_commits_the_last_group_when_it_stops(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(serve_http, "COMMIT_SECONDS", 3_600.0)  # only the final flush commits
    service = make_service(tmp_path)
    server = serve_http.make_server(service, "127.0.0.1", 0)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}

    statuses = []

    def score_then_stop() -> None:
        try:
            while service.commit_each_batch:  # until serve_forever has deferred commits
                threading.Event().wait(0.01)
            statuses.append(post(service, transaction(1)).status)
        finally:
            server.shutdown()  # whatever happened, serve_forever returns

    thread = threading.Thread(target=score_then_stop, daemon=True)
    thread.start()
    try:
        serve_http.serve_forever(server)  # signal handlers: the main thread's job
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    thread.join(timeout=10)
    assert statuses == [200]
    assert _pairs(tmp_path / "state" / "accounts.sqlite3") == {("A1", "B7"): 1}

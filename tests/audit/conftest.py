"""Audit fixtures: a portal key per test, a tamperer with superuser powers, a round history."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.conftest import Persona, encrypted_update, upload_headers

AUDIT_TABLES = ("audit_auditevent", "audit_checkpoint")


@pytest.fixture(autouse=True)
def portal_key_file(settings: Any, tmp_path: Path) -> Path:
    """Each test signs with its own fresh portal key, kept in its temporary directory."""
    path = tmp_path / "portal-key" / "portal.pem"
    settings.PORTAL_SIGNING_KEY_FILE = path
    settings.PORTAL_SIGNING_KEY_GENERATE = True
    return path


@contextmanager
def append_only_suspended() -> Iterator[None]:
    """Switch the append-only triggers off for a moment, as a database superuser can."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            for table in AUDIT_TABLES:
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
            try:
                yield
            finally:
                for table in AUDIT_TABLES:
                    cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only")
        else:
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN "
                f"({', '.join(repr(t) for t in AUDIT_TABLES)})"
            )
            triggers = cursor.fetchall()
            assert triggers, "the migration should have installed the append-only triggers"
            for name, _ in triggers:
                cursor.execute(f"DROP TRIGGER {name}")
            try:
                yield
            finally:
                for _, sql in triggers:
                    cursor.execute(sql)


class Tamperer:
    """Raw SQL on the audit tables with the triggers off: what an attacker could do."""

    def sql(self, statement: str, params: list[Any] | None = None) -> None:
        with append_only_suspended(), connection.cursor() as cursor:
            cursor.execute(statement, params or [])


@pytest.fixture
def tamper(db: Any) -> Tamperer:
    return Tamperer()


def put_update(client: Any, ckks: Any, rnd: Any, persona: Persona, seed: int) -> Any:
    body, _ = encrypted_update(ckks, int(rnd.vector_length), seed=seed, n=10 * (seed + 1))
    return client.put(
        f"/api/v1/rounds/{rnd.number}/update",
        data=body,
        content_type="application/octet-stream",
        **upload_headers(persona, rnd.number, body),
    )


@dataclass
class History:
    published: Any
    failed: Any
    banks: list[Persona]


@pytest.fixture
def round_history(
    client: Any,
    ckks: Any,
    open_round: Any,
    bank_alpha: Persona,
    bank_beta: Persona,
    bank_gamma: Persona,
) -> History:
    """Round 1 published from three banks after one rejected upload; round 2 failed."""
    from consortium.rounds.selectors import round_in_flight
    from consortium.rounds.services import scheduler_tick

    junk = b"junk" * 64
    refused = client.put(
        f"/api/v1/rounds/{open_round.number}/update",
        data=junk,
        content_type="application/octet-stream",
        **upload_headers(bank_alpha, open_round.number, junk),
    )
    assert refused.status_code == 400
    for seed, persona in enumerate([bank_alpha, bank_beta, bank_gamma]):
        assert put_update(client, ckks, open_round, persona, seed).status_code == 201
    scheduler_tick()
    open_round.refresh_from_db()
    assert open_round.state == "published"
    reported = client.post(
        f"/api/v1/rounds/{open_round.number}/metrics",
        {"metrics": {"auprc": 0.42, "recall_at_budget": 0.5}},
        content_type="application/json",
        **bank_alpha.auth(),
    )
    assert reported.status_code == 200, reported.content
    second = round_in_flight()
    assert second is not None
    assert put_update(client, ckks, second, bank_alpha, 5).status_code == 201
    scheduler_tick(second.deadline_at + timedelta(seconds=1))
    second.refresh_from_db()
    assert second.state == "failed"
    return History(open_round, second, [bank_alpha, bank_beta, bank_gamma])

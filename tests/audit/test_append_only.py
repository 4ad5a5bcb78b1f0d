"""The database itself refuses to change or remove audit rows; appends never fork the chain."""

from __future__ import annotations

import threading

import pytest
from django.db import DatabaseError, connection, connections, transaction

from audit.models import AuditEvent, Checkpoint
from audit.selectors import audit_chain_verify
from audit.services import audit_checkpoint_create, audit_record


def _raw(statement: str, params: list) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET actor = 'mallory' WHERE seq = %s",
        "UPDATE audit_auditevent SET hash = prev_hash WHERE seq = %s",
        "DELETE FROM audit_auditevent WHERE seq = %s",
    ],
)
def test_raw_sql_cannot_update_or_delete_an_event(statement):
    event = audit_record(action="test.guarded", actor="test")
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(statement, [event.seq])
    event_now = AuditEvent.objects.get(seq=event.seq)
    assert (event_now.actor, event_now.hash) == ("test", event.hash)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_checkpoint SET head_hash = 'x' WHERE id = %s",
        "DELETE FROM audit_checkpoint WHERE id = %s",
    ],
)
def test_raw_sql_cannot_update_or_delete_a_checkpoint(statement):
    audit_record(action="test.guarded", actor="test")
    checkpoint = audit_checkpoint_create(reason="test")
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(statement, [checkpoint.pk])
    assert Checkpoint.objects.get(pk=checkpoint.pk).head_hash == checkpoint.head_hash


@pytest.mark.django_db
def test_the_orm_is_refused_too():
    event = audit_record(action="test.guarded", actor="test")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(actor="mallory")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.filter(pk=event.pk, actor="test").exists()


@pytest.mark.django_db
def test_a_new_event_can_still_be_appended_after_a_refused_change():
    event = audit_record(action="test.guarded", actor="test")
    with pytest.raises(DatabaseError):
        _raw("DELETE FROM audit_auditevent WHERE seq = %s", [event.seq])
    later = audit_record(action="test.after", actor="test")
    assert later.prev_hash == event.hash
    assert audit_chain_verify().ok


WRITERS, EACH = 8, 25


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="SQLite serialises every write on one file lock, so parallel appends prove "
    "nothing there; the PostgreSQL run (make test) executes this test",
)
@pytest.mark.django_db(transaction=True)
def test_parallel_writers_never_fork_the_chain():
    start = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            start.wait()
            for i in range(EACH):
                with transaction.atomic():
                    audit_record(action="test.parallel", actor=f"writer:{n}", data={"i": i})
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    events = list(AuditEvent.objects.filter(action="test.parallel").order_by("seq"))
    assert len(events) == WRITERS * EACH
    # Every writer's events are interleaved with the others', each linked to its predecessor.
    assert len({e.actor for e in events[: WRITERS * 2]}) > 1
    check = audit_chain_verify()
    assert check.ok, check.reason
    everything = list(AuditEvent.objects.order_by("seq").values_list("seq", "prev_hash", "hash"))
    assert [s for s, _, _ in everything] == list(range(1, len(everything) + 1))
    assert len({prev for _, prev, _ in everything}) == len(everything)  # no two share a parent

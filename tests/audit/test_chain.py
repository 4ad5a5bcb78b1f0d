"""The chain links every event to the one before it; the verifier names what was tampered with."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.chain import GENESIS, event_body, event_hash, verify_events
from audit.models import AuditEvent, AuditHead
from audit.selectors import audit_chain_verify
from audit.services import audit_record

pytestmark = pytest.mark.django_db


def _five() -> list[AuditEvent]:
    return [audit_record(action=f"test.{i}", actor="test", data={"i": i}) for i in range(5)]


def test_each_event_links_to_the_previous_hash_and_the_chain_verifies():
    before = AuditEvent.objects.count()
    first = audit_record(action="test.one", actor="test")
    second = audit_record(action="test.two", actor="test", data={"x": 1})
    assert second.prev_hash == first.hash
    assert second.seq == first.seq + 1
    check = audit_chain_verify()
    assert check.ok, check.reason
    assert check.events == before + 2
    assert (check.head_seq, check.head_hash) == (second.seq, second.hash)


def test_the_stored_event_hashes_exactly_what_the_database_gives_back():
    # Integer keys become strings in JSON, and sort differently: hashing the caller's dict
    # instead of the stored one would make this event fail verification forever.
    data: dict[Any, Any] = {10: "a", 2: ("b", 1.5)}  # not str keys, on purpose
    event = audit_record(action="test.keys", actor="test", data=data)
    event.refresh_from_db()
    assert event.data == {"10": "a", "2": ["b", 1.5]}
    assert event_hash(event.prev_hash, event_body(event.as_record())) == event.hash
    assert audit_chain_verify().ok


def test_an_edited_event_is_named_as_modified(tamper):
    events = _five()
    target = events[2]
    tamper.sql("UPDATE audit_auditevent SET actor = %s WHERE seq = %s", ["mallory", target.seq])
    check = audit_chain_verify()
    assert not check.ok
    assert (check.first_bad_seq, check.problem) == (target.seq, "modified")


def test_an_edited_data_field_is_named_as_modified(tamper):
    events = _five()
    tamper.sql("UPDATE audit_auditevent SET data = %s WHERE seq = %s", ['{"i": 99}', events[1].seq])
    check = audit_chain_verify()
    assert (check.ok, check.first_bad_seq, check.problem) == (False, events[1].seq, "modified")


def test_a_deleted_event_is_named_as_deleted(tamper):
    events = _five()
    tamper.sql("DELETE FROM audit_auditevent WHERE seq = %s", [events[2].seq])
    check = audit_chain_verify()
    assert (check.ok, check.first_bad_seq, check.problem) == (False, events[2].seq, "deleted")


def test_a_deletion_hidden_by_renumbering_the_later_events_is_still_named(tamper):
    events = _five()
    gone = events[1].seq
    tamper.sql("DELETE FROM audit_auditevent WHERE seq = %s", [gone])
    for event in events[2:]:
        tamper.sql(
            "UPDATE audit_auditevent SET seq = %s WHERE seq = %s", [event.seq - 1, event.seq]
        )
    tamper.sql("UPDATE audit_audithead SET seq = seq - 1")
    check = audit_chain_verify()
    assert (check.ok, check.first_bad_seq, check.problem) == (False, gone, "deleted")


def test_deleting_the_newest_events_is_caught_by_the_head(tamper):
    events = _five()
    tamper.sql("DELETE FROM audit_auditevent WHERE seq >= %s", [events[3].seq])
    check = audit_chain_verify()
    assert (check.ok, check.first_bad_seq, check.problem) == (False, events[3].seq, "deleted")


def _forge(seq: int, prev_hash: str, action: str = "bank.created") -> dict:
    body = {
        "seq": seq,
        "created_at": "2026-01-01T00:00:00+00:00",
        "actor": "user:mallory",
        "action": action,
        "object_type": "",
        "object_id": "",
        "data": {"forged": True},
    }
    return {**body, "prev_hash": prev_hash, "hash": event_hash(prev_hash, body)}


def _insert_raw(tamper, row: dict) -> None:
    tamper.sql(
        "INSERT INTO audit_auditevent (seq, created_at, actor, action, object_type, object_id, "
        "data, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [
            row["seq"],
            row["created_at"],
            row["actor"],
            row["action"],
            row["object_type"],
            row["object_id"],
            '{"forged": true}',
            row["prev_hash"],
            row["hash"],
        ],
    )


def test_a_well_forged_event_inserted_in_the_middle_is_named_as_inserted(tamper):
    events = _five()
    at = events[2].seq
    # Make room, as an attacker must: shift the later events up (top first: seq is unique).
    for event in reversed(events[2:]):
        tamper.sql(
            "UPDATE audit_auditevent SET seq = %s WHERE seq = %s", [event.seq + 1, event.seq]
        )
    _insert_raw(tamper, _forge(at, events[1].hash))
    tamper.sql("UPDATE audit_audithead SET seq = seq + 1")
    check = audit_chain_verify()
    assert (check.ok, check.first_bad_seq, check.problem) == (False, at, "inserted")


def test_an_event_appended_behind_the_head_is_named_as_inserted(tamper):
    events = _five()
    last = events[-1]
    _insert_raw(tamper, _forge(last.seq + 1, last.hash))
    check = audit_chain_verify()
    assert (check.ok, check.first_bad_seq, check.problem) == (False, last.seq + 1, "inserted")


def test_the_command_names_the_first_bad_event_and_fails(tamper, capsys):
    events = _five()
    call_command("audit_verify")
    assert "audit trail intact" in capsys.readouterr().out
    tamper.sql("UPDATE audit_auditevent SET action = 'x' WHERE seq = %s", [events[3].seq])
    tamper.sql("DELETE FROM audit_auditevent WHERE seq = %s", [events[1].seq])
    with pytest.raises(CommandError, match=rf"event #{events[1].seq} \(deleted\)") as failure:
        call_command("audit_verify")
    assert failure.value.returncode == 1


# --- the pure walk, without a database ----------------------------------------------------


def _chain(n: int, start: int = 1, prev: str = GENESIS) -> list[dict]:
    events = []
    for seq in range(start, start + n):
        events.append(_forge(seq, prev, action=f"a{seq}"))
        prev = events[-1]["hash"]
    return events


def test_an_excerpt_that_does_not_start_at_one_verifies_from_its_recorded_predecessor():
    excerpt = _chain(10)[4:]
    result = verify_events(excerpt, prev_hash=excerpt[0]["prev_hash"], first_seq=5)
    assert result.ok and result.events == 6 and result.last_seq == 10


def test_a_carelessly_inserted_event_is_told_apart_from_a_modified_one():
    events = _chain(5)
    shifted = [{**e, "seq": e["seq"] + 1} for e in events[2:]]
    junk = {**_forge(3, "f" * 64), "hash": "e" * 64}
    result = verify_events([*events[:2], junk, *shifted])
    assert (result.first_bad_seq, result.problem) == (3, "inserted")


@pytest.mark.parametrize("field", ["actor", "action", "created_at", "object_id"])
def test_changing_any_hashed_field_breaks_the_event(field):
    events = _chain(4)
    events[1] = {**events[1], field: events[1][field] + "x"}
    result = verify_events(events)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 2, "modified")


def test_the_head_row_stays_updatable():
    audit_record(action="test.one", actor="test")
    assert AuditHead.objects.filter(id=1).update(seq=AuditHead.objects.get(id=1).seq) == 1

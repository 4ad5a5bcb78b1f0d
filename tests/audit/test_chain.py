"""The audit chain links every event to the one before it."""

from __future__ import annotations

import pytest
from django.db import connection

from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from audit.services import audit_record

pytestmark = pytest.mark.django_db


def test_each_event_links_to_the_previous_hash_and_the_chain_verifies():
    first = audit_record(action="test.one", actor="test")
    second = audit_record(action="test.two", actor="test", data={"x": 1})
    assert second.prev_hash == first.hash
    check = audit_chain_verify()
    assert check.ok and check.events == 2


def test_an_edited_event_is_named_by_the_verifier():
    audit_record(action="test.one", actor="test")
    target = audit_record(action="test.two", actor="test", data={"amount": 1})
    audit_record(action="test.three", actor="test")
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {AuditEvent._meta.db_table} SET actor = %s WHERE seq = %s",
            ["mallory", target.seq],
        )
    check = audit_chain_verify()
    assert not check.ok
    assert check.first_bad_seq == target.seq


def test_a_deleted_event_is_found_as_a_gap():
    audit_record(action="test.one", actor="test")
    target = audit_record(action="test.two", actor="test")
    audit_record(action="test.three", actor="test")
    AuditEvent.objects.filter(seq=target.seq).delete()
    check = audit_chain_verify()
    assert not check.ok and check.first_bad_seq == target.seq

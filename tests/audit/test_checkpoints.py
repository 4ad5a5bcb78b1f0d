"""Signed checkpoints of the chain head, and the portal key that signs them."""

from __future__ import annotations

import stat

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from audit.chain import GENESIS, checkpoint_message, event_body, event_hash
from audit.models import AuditEvent, AuditHead, Checkpoint
from audit.portal_key import portal_public_key, portal_signing_key
from audit.selectors import audit_chain_verify
from audit.services import audit_checkpoint_create, audit_record
from he.signing import public_key_b64, signing_key_new, verify

pytestmark = pytest.mark.django_db


def _valid(checkpoint: Checkpoint) -> bool:
    message = checkpoint_message(
        checkpoint.seq, checkpoint.head_hash, checkpoint.signed_at.isoformat(), checkpoint.reason
    )
    return verify(portal_public_key(), message, checkpoint.signature)


def test_a_checkpoint_signs_the_current_head():
    event = audit_record(action="test.one", actor="test")
    checkpoint = audit_checkpoint_create(reason="test")
    assert (checkpoint.seq, checkpoint.head_hash) == (event.seq, event.hash)
    assert checkpoint.public_key == portal_public_key()
    assert _valid(checkpoint)
    assert audit_chain_verify().checkpoints == 1


def test_each_round_close_is_checkpointed_in_the_same_transaction(round_history):
    published = AuditEvent.objects.get(action="round.published", data__round=1)
    failed = AuditEvent.objects.get(action="round.failed", data__round=2)
    by_reason = {c.reason: c for c in Checkpoint.objects.all()}
    assert by_reason["round 1 published"].head_hash == published.hash
    assert by_reason["round 2 failed"].head_hash == failed.hash
    assert all(_valid(c) for c in by_reason.values())


def test_the_command_signs_on_demand(capsys):
    audit_record(action="test.one", actor="test")
    call_command("audit_checkpoint", "--reason", "quarterly review")
    checkpoint = Checkpoint.objects.get()
    assert checkpoint.reason == "quarterly review" and _valid(checkpoint)
    assert checkpoint.head_hash in capsys.readouterr().out


def test_a_chain_rewritten_with_fresh_hashes_is_caught_by_a_checkpoint(tamper):
    events = [audit_record(action=f"test.{i}", actor="test") for i in range(4)]
    checkpoint = audit_checkpoint_create(reason="test")
    # An attacker edits event 2 and recomputes every hash and link after it, and the head.
    prev = events[0].hash
    for event in events[1:]:
        event.refresh_from_db()
        body = event_body(event.as_record())
        if event.pk == events[1].pk:
            body["actor"] = "user:mallory"
        digest = event_hash(prev, body)
        tamper.sql(
            "UPDATE audit_auditevent SET actor = %s, prev_hash = %s, hash = %s WHERE id = %s",
            [body["actor"], prev, digest, event.pk],
        )
        prev = digest
    AuditHead.objects.filter(id=1).update(hash=prev)
    check = audit_chain_verify()
    assert (check.ok, check.problem, check.first_bad_seq) == (False, "checkpoint", checkpoint.seq)
    assert "rewritten" in check.reason


def test_a_checkpoint_signed_by_another_key_is_refused(tamper):
    audit_record(action="test.one", actor="test")
    checkpoint = audit_checkpoint_create(reason="test")
    stranger = signing_key_new()
    tamper.sql(
        "UPDATE audit_checkpoint SET public_key = %s WHERE id = %s",
        [public_key_b64(stranger), checkpoint.pk],
    )
    check = audit_chain_verify()
    assert not check.ok and "not the portal's trusted key" in check.reason


def test_a_checkpoint_of_the_empty_chain_names_the_genesis(tamper):
    tamper.sql("DELETE FROM audit_auditevent")
    tamper.sql("UPDATE audit_audithead SET seq = 0, hash = %s", [GENESIS])
    checkpoint = audit_checkpoint_create(reason="empty")
    assert (checkpoint.seq, checkpoint.head_hash) == (0, GENESIS)
    assert audit_chain_verify().ok


def test_the_embedded_default_creates_the_key_once_readable_only_by_the_portal(portal_key_file):
    assert not portal_key_file.exists()
    first = portal_public_key()
    assert stat.S_IMODE(portal_key_file.stat().st_mode) == 0o600
    assert portal_public_key() == first
    assert list(portal_key_file.parent.iterdir()) == [portal_key_file]  # no temp files left


def test_a_configured_key_path_that_does_not_exist_is_an_error(settings, tmp_path):
    settings.PORTAL_SIGNING_KEY_FILE = tmp_path / "mounted" / "portal.pem"
    settings.PORTAL_SIGNING_KEY_GENERATE = False
    with pytest.raises(ImproperlyConfigured, match="does not exist"):
        portal_signing_key()
    assert not settings.PORTAL_SIGNING_KEY_FILE.exists()


def test_a_key_file_that_is_not_a_key_is_an_error(settings, tmp_path):
    path = tmp_path / "portal.pem"
    path.write_text("not a key")
    settings.PORTAL_SIGNING_KEY_FILE = path
    with pytest.raises(ImproperlyConfigured, match="portal signing key"):
        portal_signing_key()


def test_the_system_check_names_a_missing_configured_key(settings, tmp_path):
    from django.core.checks import run_checks

    settings.PORTAL_SIGNING_KEY_FILE = tmp_path / "mounted" / "portal.pem"
    settings.PORTAL_SIGNING_KEY_GENERATE = False
    errors = [e for e in run_checks() if e.id == "audit.E001"]
    assert len(errors) == 1 and "does not exist" in errors[0].msg
    settings.PORTAL_SIGNING_KEY_GENERATE = True
    assert not [e for e in run_checks() if e.id == "audit.E001"]

"""Reads of the audit trail, and the chain check."""

from __future__ import annotations

from dataclasses import dataclass

from audit.chain import GENESIS, event_hash
from audit.models import AuditEvent


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    events: int
    first_bad_seq: int | None
    reason: str


def audit_chain_verify() -> ChainCheck:
    """Walk the chain in order; name the first event whose link or hash does not hold."""
    prev, count = GENESIS, 0
    expected_seq = 1
    for event in AuditEvent.objects.order_by("seq").iterator():
        body = {
            "seq": event.seq,
            "created_at": event.created_at.isoformat(),
            "actor": event.actor,
            "action": event.action,
            "object_type": event.object_type,
            "object_id": event.object_id,
            "data": event.data,
        }
        if event.seq != expected_seq:
            return ChainCheck(False, count, expected_seq, "event missing (sequence gap)")
        if event.prev_hash != prev:
            return ChainCheck(False, count, event.seq, "link to the previous event broken")
        if event_hash(prev, body) != event.hash:
            return ChainCheck(False, count, event.seq, "event content was modified")
        prev, count, expected_seq = event.hash, count + 1, expected_seq + 1
    return ChainCheck(True, count, None, "chain intact")

"""The only writer of audit rows. Call it inside the transaction of the change it records."""

from __future__ import annotations

from typing import Any

from django.db import models, transaction
from django.utils import timezone

from audit.chain import event_hash
from audit.models import AuditEvent, AuditHead


def audit_record(
    *,
    action: str,
    actor: str,
    target: models.Model | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain.

    The head row is locked for the rest of the caller's transaction, which serialises
    appends: two writers can never link to the same predecessor.
    """
    with transaction.atomic():
        head, _ = AuditHead.objects.select_for_update().get_or_create(id=1)
        now = timezone.now()
        body = {
            "seq": head.seq + 1,
            "created_at": now.isoformat(),
            "actor": actor,
            "action": action,
            "object_type": target._meta.label_lower if target is not None else "",
            "object_id": str(target.pk) if target is not None else "",
            "data": data or {},
        }
        digest = event_hash(head.hash, body)
        event = AuditEvent.objects.create(
            seq=body["seq"],
            created_at=now,
            actor=actor,
            action=action,
            object_type=body["object_type"],
            object_id=body["object_id"],
            data=body["data"],
            prev_hash=head.hash,
            hash=digest,
        )
        head.seq, head.hash = event.seq, digest
        head.save(update_fields=["seq", "hash"])
        return event

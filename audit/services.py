"""The only writer of audit rows. Call it inside the transaction of the change it records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from audit import render
from audit.chain import canonical, checkpoint_message, event_hash
from audit.models import AuditEvent, AuditHead, Checkpoint
from audit.portal_key import portal_signing_key
from audit.report import ReportSource, Selection, report_build
from audit.selectors import RecordedState, audit_consortium_state_last
from he.signing import public_key_b64, sign


def _locked_head() -> AuditHead:
    # get_or_create: after a TRUNCATE (Django's flush) the row is gone. Two writers racing
    # to create it collide on the primary key; the loser re-reads it, locked.
    head, _ = AuditHead.objects.select_for_update().get_or_create(id=1)
    return head


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
    # Hash exactly what the database will give back: JSON turns tuples into lists and
    # integer keys into strings (which would also change their sort order).
    payload = json.loads(canonical(data or {}))
    with transaction.atomic():
        head = _locked_head()
        now = timezone.now()
        body = {
            "seq": head.seq + 1,
            "created_at": now.isoformat(),
            "actor": actor,
            "action": action,
            "object_type": target._meta.label_lower if target is not None else "",
            "object_id": str(target.pk) if target is not None else "",
            "data": payload,
        }
        digest = event_hash(head.hash, body)
        event = AuditEvent.objects.create(
            seq=body["seq"],
            created_at=now,
            actor=actor,
            action=action,
            object_type=body["object_type"],
            object_id=body["object_id"],
            data=payload,
            prev_hash=head.hash,
            hash=digest,
        )
        head.seq, head.hash = event.seq, digest
        head.save(update_fields=["seq", "hash"])
        return event


def audit_refusal(
    *,
    action: str,
    actor: str,
    reason: str,
    target: models.Model | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record a refused request, in its own transaction.

    Called once the refused change has rolled back (by the API's exception handler and the
    portal's error paths), so the event survives the rollback that the refusal caused.
    ``reason`` is what the caller was told; a ``reason`` in ``data`` (a short code the
    service chose) takes its place.
    """
    with transaction.atomic():
        return audit_record(
            action=action, actor=actor, target=target, data={"reason": reason, **(data or {})}
        )


def audit_consortium_state(
    *, halted: bool, data: dict[str, Any], actor: str = "scheduler"
) -> AuditEvent | None:
    """Record ``consortium.halted`` or ``consortium.resumed`` when the trail says otherwise.

    Called on every scheduler tick, it writes only on a change: the first tick that finds
    the consortium halted (or halted for other reasons, ``data["codes"]``), and the first
    that finds it running again. Checked again under the head lock, so two schedulers
    ticking together record a change once. Returns the event, or None when nothing changed.
    """
    if not _state_changed(audit_consortium_state_last(), halted, data):
        return None  # the common case: no lock taken
    with transaction.atomic():
        _locked_head()
        last = audit_consortium_state_last()
        if not _state_changed(last, halted, data):
            return None
        if halted:
            return audit_record(action="consortium.halted", actor=actor, data=data)
        after = last.data.get("codes", []) if last is not None else []
        return audit_record(action="consortium.resumed", actor=actor, data={**data, "after": after})


def _state_changed(last: RecordedState | None, halted: bool, data: dict[str, Any]) -> bool:
    if not halted:
        return last is not None and last.halted
    return last is None or not last.halted or last.data.get("codes") != data.get("codes")


def audit_checkpoint_create(*, reason: str) -> Checkpoint:
    """Sign the current chain head with the portal's key and keep the signature.

    Called when a round closes (inside that transaction, so the checkpoint covers the
    close event) and on demand. The head stays locked until the caller commits, so no
    event can slip in between the head we read and the one we sign.
    """
    with transaction.atomic():
        head = _locked_head()
        key = portal_signing_key()
        signed_at = timezone.now()
        reason = " ".join(reason.split())[:200]
        message = checkpoint_message(head.seq, head.hash, signed_at.isoformat(), reason)
        return Checkpoint.objects.create(
            seq=head.seq,
            head_hash=head.hash,
            signed_at=signed_at,
            reason=reason,
            public_key=public_key_b64(key),
            signature=sign(key, message),
        )


@dataclass(frozen=True)
class Export:
    content: bytes
    content_type: str
    filename: str
    report: dict[str, Any]


def audit_report_export(
    *, selection: Selection, fmt: str, actor: str, source: ReportSource
) -> Export:
    """Record the export, sign the head, then build and render the report.

    The event and the checkpoint commit first, in a short transaction: building a PDF
    must not hold the head lock that every upload waits for. Events never change, so
    reading them afterwards gives the same report. ``source`` supplies the rounds, key
    epochs and banks (the portal's: ``consortium.audit_api.services``).
    """
    render.check_format(fmt)
    with transaction.atomic():
        event = audit_record(
            action="audit.report_exported",
            actor=actor,
            data={"format": fmt, **selection.as_dict()},
        )
        head = audit_checkpoint_create(reason=f"report export (event #{event.seq})")
    report = report_build(selection=selection, generated_by=actor, head=head, source=source)
    content, content_type = render.render(report, fmt)
    stamp = head.signed_at.strftime("%Y%m%dT%H%M%SZ")
    return Export(content, content_type, f"audit-report-{stamp}.{fmt}", report)

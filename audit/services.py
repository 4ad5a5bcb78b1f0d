"""The only writer of audit rows. Call it inside the transaction of the change it records."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from audit import pack, render
from audit.chain import GENESIS, canonical, checkpoint_message, encode_report, event_hash
from audit.models import AuditEvent, AuditHead, Checkpoint, ReportSnapshot
from audit.portal_key import portal_signing_key
from audit.report import ReportSource, Selection, SelectionError, report_build
from audit.selectors import RecordedState, audit_consortium_state_last, audit_head
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


def audit_checkpoint_create(*, reason: str, seq: int | None = None) -> Checkpoint:
    """Sign the chain head (or the event ``seq`` at or before it) with the portal's key.

    Called when a round closes (inside that transaction, so the checkpoint covers the
    close event), for a report snapshot, and on demand. The head stays locked until the
    caller commits, so no event can slip in between the head we read and the one we sign.
    """
    with transaction.atomic():
        head = _locked_head()
        key = portal_signing_key()
        signed_at = timezone.now()
        reason = " ".join(reason.split())[:200]
        at, at_hash = head.seq, head.hash
        if seq is not None and seq != head.seq:
            at, at_hash = seq, AuditEvent.objects.get(seq=seq).hash if seq else GENESIS
        message = checkpoint_message(at, at_hash, signed_at.isoformat(), reason)
        return Checkpoint.objects.create(
            seq=at,
            head_hash=at_hash,
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
    # SHA-256 of the file given out; of a pack, of its signed manifest.
    digest: str


def _snapshot_stored(seq: int, key: str) -> dict[str, Any] | None:
    found = ReportSnapshot.objects.filter(seq=seq, selection_sha256=key).first()
    return json.loads(zlib.decompress(bytes(found.content))) if found is not None else None


def audit_snapshot_take(
    *, selection: Selection, at: int | None, actor: str, source: ReportSource
) -> dict[str, Any]:
    """The signed report of ``selection`` as of event ``at`` (None: the head now).

    Taken once per (event, selection) and kept: every later export of it renders the
    same report. The checkpoint is signed in a short transaction of its own and the
    report built outside it: a PDF's worth of reading must not hold the head lock that
    every upload waits for.
    """
    last = audit_head().seq
    if at is not None and not 0 <= at <= last:
        raise SelectionError(f"at={at}: the trail's events run from #1 to #{last}")
    head_seq = last if at is None else at
    key = pack.sha256(canonical(selection.as_dict()))
    stored = _snapshot_stored(head_seq, key)
    if stored is not None:
        return stored
    checkpoint = audit_checkpoint_create(
        reason=f"report snapshot at event #{head_seq}", seq=head_seq
    )
    report = report_build(selection=selection, generated_by=actor, head=checkpoint, source=source)
    try:
        with transaction.atomic():
            ReportSnapshot.objects.create(
                seq=checkpoint.seq,
                selection=selection.as_dict(),
                selection_sha256=key,
                created_at=checkpoint.signed_at,
                created_by=actor,
                report_sha256=report["signature"]["body_sha256"],
                content=zlib.compress(encode_report(report)),
            )
    except IntegrityError:
        # Another export of the same event and selection stored its snapshot first: use
        # that one, so that both exports give the same report.
        return _snapshot_stored(checkpoint.seq, key) or report
    return report


def _export_files(report: dict[str, Any], fmt: str) -> tuple[bytes, str, dict[str, Any] | None]:
    """The export's bytes and type; the pack's manifest is built only for a pack."""
    if fmt != render.PACK:
        content, content_type = render.render(report, fmt)
        return content, content_type, None
    files = render.evidence_files(report)
    manifest = pack.manifest_build(report, files, portal_signing_key())
    return pack.pack_build(manifest, files), render.EXPORT_FORMATS[fmt], manifest


def audit_report_export(
    *, selection: Selection, fmt: str, actor: str, source: ReportSource, at: int | None = None
) -> Export:
    """Take (or reuse) the snapshot at event ``at``, render it, then record the export.

    The export event comes after the snapshot, so it is not in the report it describes;
    it names the snapshot, the report's digest and the file's (a pack: its manifest's).
    ``source`` supplies the rounds, key epochs and banks (the portal's:
    ``consortium.audit_api.services``).
    """
    render.check_format(fmt)
    report = audit_snapshot_take(selection=selection, at=at, actor=actor, source=source)
    content, content_type, manifest = _export_files(report, fmt)
    head = report["signed_head"]
    digest = pack.sha256(pack.encode_manifest(manifest) if manifest else content)
    named = {"manifest_sha256": digest} if manifest else {"file_sha256": digest}
    audit_record(
        action="audit.report_exported",
        actor=actor,
        data={
            "format": fmt,
            **selection.as_dict(),
            "snapshot_seq": head["seq"],
            "snapshot_head_hash": head["head_hash"],
            "report_sha256": report["signature"]["body_sha256"],
            **named,
        },
    )
    stamp = head["signed_at"][:19].replace("-", "").replace(":", "")
    return Export(
        content, content_type, f"audit-report-{stamp}Z-{head['seq']}.{fmt}", report, digest
    )

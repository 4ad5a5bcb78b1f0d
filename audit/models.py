"""Audit events chained by hash, the head row that serialises appends, signed checkpoints."""

from __future__ import annotations

from typing import Any

from django.db import models

from audit.chain import GENESIS


class AuditEvent(models.Model):
    """One thing that happened, in order. The database refuses UPDATE and DELETE on it."""

    seq = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor = models.CharField(max_length=200)
    action = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=100, blank=True)
    data = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["created_at"], name="audit_event_created_at")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor}"

    def as_record(self) -> dict[str, Any]:
        """The event as the chain hashes it, plus its links: the shape reports carry."""
        return {
            "seq": self.seq,
            "created_at": self.created_at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "data": self.data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


class AuditHead(models.Model):
    """A single row locked by every append, so concurrent writers never fork the chain."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS)

    def __str__(self) -> str:
        return f"head at #{self.seq}"


class Checkpoint(models.Model):
    """The chain head at one moment, signed with the portal's Ed25519 key.

    Anyone holding an exported checkpoint can later prove that the history up to ``seq``
    has not been rewritten, even by someone who recomputed every hash after an edit.
    """

    seq = models.PositiveBigIntegerField(db_index=True)
    head_hash = models.CharField(max_length=64)
    signed_at = models.DateTimeField()
    reason = models.CharField(max_length=200)
    public_key = models.CharField(max_length=64, help_text="base64 raw Ed25519 public key")
    signature = models.CharField(max_length=100, help_text="base64 Ed25519 signature")

    class Meta:
        ordering = ["seq", "id"]

    def __str__(self) -> str:
        return f"checkpoint at #{self.seq} ({self.reason})"

    def as_record(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "head_hash": self.head_hash,
            "signed_at": self.signed_at.isoformat(),
            "reason": self.reason,
            "public_key": self.public_key,
            "signature": self.signature,
        }


class ReportSnapshot(models.Model):
    """One export's report, frozen at a chain head: every format is rendered from it.

    Exporting PDF, CSV, JSON or the evidence pack of the same head and selection gives
    the same signed report, whatever happened since: the rounds and roster it summarises
    are read once, when the snapshot is taken, and kept here as the signed JSON.
    """

    seq = models.PositiveBigIntegerField()
    selection = models.JSONField()
    # The key: a selection of many rounds is too long for a unique index of its own.
    selection_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=200)
    report_sha256 = models.CharField(max_length=64)
    # The signed report as audit.chain.encode_report wrote it, zlib-compressed.
    content = models.BinaryField()

    class Meta:
        ordering = ["seq", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["seq", "selection_sha256"], name="audit_snapshot_unique"
            )
        ]

    def __str__(self) -> str:
        return f"report snapshot at #{self.seq}"

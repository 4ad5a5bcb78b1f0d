"""Roster versions as proposed and signed, the objections nodes send, dispute clearances.

The portal only stores these: a version is valid because the banks signed it, which the
library in ``governance/`` checks, not because a row here says so.
"""

from __future__ import annotations

from django.db import models

from consortium.members.models import Bank


class VersionStatus(models.TextChoices):
    PENDING = "pending", "Pending signatures"
    IN_FORCE = "in_force", "In force"
    WITHDRAWN = "withdrawn", "Withdrawn"


class RosterVersion(models.Model):
    """One link of the roster chain: its body exactly as the banks sign it."""

    number = models.PositiveIntegerField()
    version_hash = models.CharField(max_length=64, unique=True)
    previous_hash = models.CharField(max_length=64)
    body = models.JSONField(help_text="The version without signatures (what is hashed).")
    kind = models.CharField(max_length=40)
    summary = models.TextField(help_text="The change in plain words, from governance.describe.")
    status = models.CharField(
        max_length=20, choices=VersionStatus.choices, default=VersionStatus.PENDING, db_index=True
    )
    proposed_by = models.CharField(max_length=200)
    proposed_at = models.DateTimeField(auto_now_add=True)
    in_force_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["number", "proposed_at"]
        constraints = [
            # A withdrawn proposal frees its number: the next proposal reuses it.
            models.UniqueConstraint(
                fields=["number"],
                condition=~models.Q(status="withdrawn"),
                name="roster_one_live_version_per_number",
            ),
            # One pending version at a time, whatever the services check first.
            models.UniqueConstraint(
                fields=["status"],
                condition=models.Q(status="pending"),
                name="roster_one_pending_version",
            ),
        ]

    def __str__(self) -> str:
        return f"roster v{self.number} ({self.status})"


class RosterSignature(models.Model):
    """A bank's Ed25519 signature of one version, as it sent it."""

    version = models.ForeignKey(RosterVersion, on_delete=models.PROTECT, related_name="signatures")
    bank_id = models.SlugField(max_length=50)
    signature = models.CharField(max_length=100)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version", "bank_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "bank_id"], name="roster_one_signature_per_bank"
            )
        ]

    def __str__(self) -> str:
        return f"{self.bank_id} signed roster v{self.version.number}"


class Objection(models.Model):
    """A node's signed refusal of a round, shown to everyone."""

    bank = models.ForeignKey(Bank, on_delete=models.PROTECT, related_name="objections")
    round_number = models.PositiveIntegerField(null=True, blank=True)
    reason_code = models.CharField(max_length=64)
    message = models.TextField()
    body = models.JSONField(help_text="The objection exactly as signed (canonical fields).")
    # Ed25519 is deterministic: a node resending the same objection sends the same bytes.
    signature = models.CharField(max_length=100, unique=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"objection by {self.bank} ({self.reason_code})"


class DisputeClearance(models.Model):
    """A bank's signature clearing the dispute of one round, as it sent it.

    Stored only; whether a round is cleared is recomputed from these signatures
    (``governance.dispute_of``), so a row inserted by hand with a made-up signature counts
    for nothing.
    """

    round_number = models.PositiveIntegerField(db_index=True)
    bank_id = models.SlugField(max_length=50)
    signature = models.CharField(max_length=100)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["round_number", "bank_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["round_number", "bank_id"], name="dispute_one_clearance_per_bank"
            )
        ]

    def __str__(self) -> str:
        return f"{self.bank_id} cleared the dispute of round {self.round_number}"

"""Secure aggregation v2's rows: each bank's advertised mask key and shares, and its reveal."""

from __future__ import annotations

from django.db import models

from consortium.members.models import Bank


class MaskKey(models.Model):
    """A bank's advertised mask key for a v2 round, and the share boxes it sealed to peers.

    ``shares`` maps each recipient's slug to its base64 share box; the portal cannot open
    them and hands each recipient only its own.
    """

    round = models.ForeignKey("rounds.Round", on_delete=models.PROTECT, related_name="mask_keys")
    bank = models.ForeignKey(Bank, on_delete=models.PROTECT, related_name="mask_keys")
    mask_public_key = models.CharField(max_length=64)
    seed_commitment = models.CharField(max_length=64)
    signature = models.CharField(max_length=100)
    shares = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "rounds"
        ordering = ["round", "bank"]
        constraints = [
            models.UniqueConstraint(fields=["round", "bank"], name="one_mask_key_per_bank")
        ]

    def __str__(self) -> str:
        return f"{self.bank} mask key for round {self.round.number}"


class ShareReveal(models.Model):
    """A survivor's signed reveal for a v2 round (``protocol.Reveal`` as JSON)."""

    round = models.ForeignKey("rounds.Round", on_delete=models.PROTECT, related_name="reveals")
    bank = models.ForeignKey(Bank, on_delete=models.PROTECT, related_name="reveals")
    body = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "rounds"
        ordering = ["round", "bank"]
        constraints = [
            models.UniqueConstraint(fields=["round", "bank"], name="one_reveal_per_bank")
        ]

    def __str__(self) -> str:
        return f"{self.bank} reveal for round {self.round.number}"

"""The banks' signed gate verdicts on evaluation rounds, stored as they were sent."""

from __future__ import annotations

from django.db import models

from consortium.members.models import Bank


class GateVerdict(models.Model):
    """A bank's signed verdict (``governance.verdict.GateVerdict``) on an evaluation round.

    Stored only: whether a candidate is adopted is recomputed from these signatures under
    the roster keys (``consortium.rounds.gate_selectors``), so a row inserted by hand with
    a made-up or missing signature counts for nothing.
    """

    round = models.ForeignKey("rounds.Round", on_delete=models.PROTECT, related_name="verdicts")
    bank = models.ForeignKey(Bank, on_delete=models.PROTECT, related_name="gate_verdicts")
    verdict = models.JSONField(help_text="The verdict exactly as signed (canonical fields).")
    signature = models.CharField(max_length=100)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "rounds"
        ordering = ["round", "bank"]
        constraints = [
            models.UniqueConstraint(fields=["round", "bank"], name="one_gate_verdict_per_bank")
        ]

    def __str__(self) -> str:
        return f"{self.bank} verdict on round {self.round_id}"

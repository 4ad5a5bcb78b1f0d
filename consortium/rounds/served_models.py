"""Which model version each bank says its node serves (opt-in, self-reported)."""

from __future__ import annotations

from django.db import models

from consortium.members.models import Bank


class ServedModel(models.Model):
    """The version of a published round's model a bank's node serves, as it last reported.

    One row per bank, replaced at each report: what the node serves now, not a history
    (the trail keeps every report as a ``model.served`` event).
    """

    bank = models.OneToOneField(Bank, on_delete=models.PROTECT, related_name="served_model")
    round = models.ForeignKey("rounds.Round", on_delete=models.PROTECT, related_name="+")
    version = models.CharField(max_length=64, help_text="The node's registry version name.")
    reported_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "rounds"

    def __str__(self) -> str:
        return f"{self.bank} serves {self.version} (round {self.round_id})"

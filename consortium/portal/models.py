"""Who may see a bank's page: the link between a Django user and the bank they represent."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from consortium.members.models import Bank


class BankRepresentative(models.Model):
    """A person who speaks for one member bank; they see that bank's page and nothing else."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bank_representative"
    )
    # Banks are never deleted (revocation keeps the row), so neither are their links.
    bank = models.ForeignKey(Bank, on_delete=models.PROTECT, related_name="representatives")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["bank", "user"]

    def __str__(self) -> str:
        return f"{self.user} for {self.bank}"

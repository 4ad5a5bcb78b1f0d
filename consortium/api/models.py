"""The bounded security log: failed sign-ins, kept out of the audit hash chain."""

from __future__ import annotations

from django.db import models


class SignInFailure(models.Model):
    """Failed sign-ins from one source address for one username within one minute.

    Anyone on the network can fail a sign-in, so these rows must not grow the regulator's
    hash chain: they live here, one row per (source, username, minute), and the oldest are
    pruned past ``settings.SECURITY_LOG_MAX_ROWS``.
    """

    source = models.CharField(max_length=45, blank=True, help_text="client address")
    username = models.CharField(max_length=150, blank=True)
    minute = models.DateTimeField(help_text="start of the minute the failures fell in")
    count = models.PositiveIntegerField(default=1)
    last_at = models.DateTimeField()
    last_path = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-minute", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "username", "minute"], name="sign_in_failure_per_minute"
            )
        ]
        indexes = [models.Index(fields=["source", "minute"])]

    def __str__(self) -> str:
        return f"{self.count} failed sign-in(s) for {self.username!r} from {self.source}"

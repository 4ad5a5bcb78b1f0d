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


class IdempotentRequest(models.Model):
    """A POST made with an ``Idempotency-Key``, and the answer a retry of it gets again.

    Stored in the transaction that made the request's change, so a request either left its
    change and this row, or neither. The key itself is not stored, only its digest; the
    answer is encrypted under a key derived from it (a new bank's credential is in one),
    so only the caller holding the key can read it. Pruned a day after ``created_at``.
    """

    caller = models.CharField(max_length=80, help_text="bank:<pk> or user:<pk>")
    key_digest = models.CharField(max_length=64, help_text="SHA-256 of the Idempotency-Key")
    request_digest = models.CharField(
        max_length=64, help_text="SHA-256 of the method, path and canonical JSON body"
    )
    status_code = models.PositiveSmallIntegerField()
    response = models.BinaryField(help_text="the answer's JSON body, encrypted (Fernet)")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["caller", "key_digest"], name="idempotency_key_per_caller"
            )
        ]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"{self.caller} {self.key_digest[:12]} -> {self.status_code}"

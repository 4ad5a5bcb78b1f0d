"""A member bank and its credentials."""

from __future__ import annotations

import base64

from django.db import models


class BankStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    REVOKED = "revoked", "Revoked"


class Bank(models.Model):
    """A consortium member. Only an active bank can call the API."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=BankStatus.choices, default=BankStatus.ACTIVE)
    credential_prefix = models.CharField(max_length=32, unique=True)
    credential_hash = models.CharField(max_length=64)
    # The credential a rotation replaced, valid alongside the new one until the node
    # first uses the new one or the grace period ends (``CREDENTIAL_GRACE``).
    previous_credential_prefix = models.CharField(max_length=32, blank=True, db_index=True)
    previous_credential_hash = models.CharField(max_length=64, blank=True)
    previous_credential_expires_at = models.DateTimeField(null=True, blank=True)
    # Raw 32-byte Ed25519 public key, base64. Blank until the bank registers it.
    signing_public_key = models.CharField(max_length=64, blank=True)
    signing_key_registered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def signing_key_bytes(self) -> bytes | None:
        return base64.b64decode(self.signing_public_key) if self.signing_public_key else None

"""Writes for member banks. Each is one transaction with its audit event."""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from audit.services import audit_record
from consortium.api.errors import ApplicationError, Conflict
from consortium.governance import selectors as roster
from consortium.members.credentials import PREVIOUS_FIELDS, credential_new
from consortium.members.models import Bank, BankStatus


def _public_key_check(public_key_b64: str) -> str:
    try:
        raw = base64.b64decode(public_key_b64, validate=True)
        Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise ApplicationError(
            "signing_public_key must be a base64 raw 32-byte Ed25519 public key "
            "(the .pub file `bank-node keygen` wrote)"
        ) from exc
    return base64.b64encode(raw).decode()


@transaction.atomic
def bank_create(
    *, slug: str, name: str, actor: str, signing_public_key: str = ""
) -> tuple[Bank, str]:
    """Onboard a bank; return it and its API credential (shown once, stored hashed)."""
    slug = slugify(slug)
    if not slug:
        raise ApplicationError("slug must contain letters or digits")
    if Bank.objects.filter(slug=slug).exists():
        raise Conflict(f"a bank with slug {slug!r} already exists")
    # roster: a bank the banks already admitted gets the key they approved
    signing_public_key = roster.roster_signing_key(slug) or signing_public_key
    credential, prefix, digest = credential_new()
    bank = Bank.objects.create(
        slug=slug,
        name=name or slug,
        credential_prefix=prefix,
        credential_hash=digest,
        signing_public_key=_public_key_check(signing_public_key) if signing_public_key else "",
        signing_key_registered_at=timezone.now() if signing_public_key else None,
    )
    audit_record(
        action="bank.created",
        actor=actor,
        target=bank,
        data={"slug": bank.slug, "name": bank.name, "signing_public_key": bank.signing_public_key},
    )
    return bank, credential


def _bank_locked(bank: Bank) -> Bank:
    # Lock the row so a status change and a concurrent request see one order of events.
    return Bank.objects.select_for_update().get(pk=bank.pk)


def _status_refused(exc: Conflict, bank: Bank, status: BankStatus, actor: str) -> Conflict:
    return exc.audited(
        action="bank.status_refused",
        actor=actor,
        target=bank,
        data={"from": bank.status, "to": status.value},
    )


@transaction.atomic
def bank_set_status(*, bank: Bank, status: BankStatus, actor: str, reason: str = "") -> Bank:
    """Suspend, reactivate or revoke a bank. Revocation is final."""
    bank = _bank_locked(bank)
    if bank.status == BankStatus.REVOKED:
        revoked = Conflict(f"bank {bank.slug} is revoked; revocation cannot be undone")
        raise _status_refused(revoked, bank, status, actor)
    if bank.status == status:
        return bank
    if refusal := roster.bank_change_refusal(bank.slug, "status"):  # roster owns membership
        raise _status_refused(Conflict(refusal), bank, status, actor)
    old = bank.status
    bank.status = status
    bank.status_changed_at = timezone.now()
    bank.save(update_fields=["status", "status_changed_at"])
    audit_record(
        action=f"bank.{status.value}" if status != BankStatus.ACTIVE else "bank.reactivated",
        actor=actor,
        target=bank,
        data={"from": old, "to": status.value, "reason": reason},
    )
    return bank


@transaction.atomic
def bank_rotate_credential(*, bank: Bank, actor: str, grace: timedelta | None = None) -> str:
    """Issue a new API credential; the old one stays valid for a grace period.

    The old credential works until the node first calls with the new one
    (``consortium.members.credentials.bank_credential_switch``) or ``grace`` passes (default
    ``settings.CREDENTIAL_GRACE``; ``timedelta(0)``: refused at once, for a credential
    that may have leaked). Only the credential in force before this rotation is kept:
    one rotated away earlier stops working now.
    """
    bank = _bank_locked(bank)
    grace = settings.CREDENTIAL_GRACE if grace is None else grace
    old_prefix = bank.credential_prefix
    credential, prefix, digest = credential_new()
    until = timezone.now() + grace if grace > timedelta(0) else None
    bank.previous_credential_prefix = old_prefix if until else ""
    bank.previous_credential_hash = bank.credential_hash if until else ""
    bank.previous_credential_expires_at = until
    bank.credential_prefix, bank.credential_hash = prefix, digest
    bank.save(update_fields=["credential_prefix", "credential_hash", *PREVIOUS_FIELDS])
    audit_record(
        action="bank.credential_rotated",
        actor=actor,
        target=bank,
        data={
            "credential_prefix": prefix,
            "previous_prefix": old_prefix,
            "previous_valid_until": until.isoformat() if until else None,
        },
    )
    return credential


@transaction.atomic
def bank_register_signing_key(*, bank: Bank, public_key_b64: str, actor: str) -> Bank:
    """Register the bank's Ed25519 public key.

    A bank may set its first key itself (trust on first use, recorded in the audit
    trail); replacing a registered key is an operator action.
    """
    bank = _bank_locked(bank)
    key = _public_key_check(public_key_b64)
    if refusal := roster.bank_change_refusal(bank.slug, "signing key"):  # roster owns keys
        if key == bank.signing_public_key:
            return bank
        raise Conflict(refusal).audited(
            action="bank.signing_key_refused", actor=actor, target=bank, data={"public_key": key}
        )
    operator = actor.startswith("user:")
    if bank.signing_public_key and not operator:
        if bank.signing_public_key == key:
            return bank
        raise Conflict(
            "a signing key is already registered; ask the operator to rotate it",
            registered=bank.signing_public_key,
        )
    old = bank.signing_public_key
    bank.signing_public_key = key
    bank.signing_key_registered_at = timezone.now()
    bank.save(update_fields=["signing_public_key", "signing_key_registered_at"])
    audit_record(
        action="bank.signing_key_registered" if not old else "bank.signing_key_rotated",
        actor=actor,
        target=bank,
        data={"public_key": key, "previous": old},
    )
    return bank


@transaction.atomic
def bank_rename(*, bank: Bank, name: str, actor: str) -> Bank:
    """Change a bank's display name (the slug, which nodes use, never changes)."""
    bank = _bank_locked(bank)
    name = name.strip()
    if not name:
        raise ApplicationError("a bank's name must not be empty")
    if name == bank.name:
        return bank
    old, bank.name = bank.name, name
    bank.save(update_fields=["name"])
    audit_record(action="bank.renamed", actor=actor, target=bank, data={"from": old, "to": name})
    return bank

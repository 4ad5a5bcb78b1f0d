"""Bank API credentials: made here, stored as prefix and hash, never kept in clear.

A credential looks like ``cbk_<prefix>_<secret>``. The portal stores the prefix (to find
the row) and the SHA-256 of the whole credential; the credential is high-entropy, so a
fast hash is right here, and the comparison runs in constant time.

The one write here, :func:`bank_credential_switch`, is called by the API's
authentication class on a node's first call with a rotated credential. It lives here,
not in ``members.services``, because that authentication class is loaded while DRF
reads its settings and so cannot import the API's error module that the services use.
"""

from __future__ import annotations

import hashlib
import secrets

from django.db import transaction

from audit.services import audit_record
from consortium.members.models import Bank

CREDENTIAL_PREFIX = "cbk"
# The replaced credential a rotation keeps valid for its grace period.
PREVIOUS_FIELDS = [
    "previous_credential_prefix",
    "previous_credential_hash",
    "previous_credential_expires_at",
]


def credential_new() -> tuple[str, str, str]:
    """Return (credential, lookup prefix, hash). Show the credential once; store the rest."""
    prefix = secrets.token_hex(6)
    credential = f"{CREDENTIAL_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return credential, prefix, credential_hash(credential)


def credential_hash(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()


@transaction.atomic
def bank_credential_switch(*, bank: Bank) -> Bank:
    """The node called with its new credential: end the old one's grace period now."""
    # Locked: two first calls at once with the new credential record one switch.
    bank = Bank.objects.select_for_update().get(pk=bank.pk)
    if not bank.previous_credential_prefix:
        return bank
    old = bank.previous_credential_prefix
    bank.previous_credential_prefix, bank.previous_credential_hash = "", ""
    bank.previous_credential_expires_at = None
    bank.save(update_fields=PREVIOUS_FIELDS)
    audit_record(
        action="bank.credential_switched",
        actor=f"bank:{bank.slug}",
        target=bank,
        data={"credential_prefix": bank.credential_prefix, "previous_prefix": old},
    )
    return bank

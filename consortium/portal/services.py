"""Writes the portal adds to the domain services, each in one transaction with its audit event.

Bank and policy changes themselves go through ``consortium.members.services`` and
``consortium.rounds.services``; this module only adds what exists because there is a web
page: who was shown a credential, and which person represents which bank.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction

from audit.services import audit_record
from consortium.api.errors import ApplicationError, Conflict
from consortium.members.models import Bank
from consortium.members.services import bank_create, bank_rotate_credential
from consortium.portal.access import AUDITORS_GROUP, OPERATORS_GROUP
from consortium.portal.models import BankRepresentative


def _credential_shown(bank: Bank, actor: str, context: str) -> None:
    # The credential itself is never recorded; its lookup prefix says which one was shown.
    audit_record(
        action="portal.credential_shown",
        actor=actor,
        target=bank,
        data={"bank": bank.slug, "credential_prefix": bank.credential_prefix, "context": context},
    )


@transaction.atomic
def bank_onboard(*, slug: str, name: str, signing_public_key: str, actor: str) -> tuple[Bank, str]:
    """Create a bank and record that its first credential was shown to ``actor``."""
    bank, credential = bank_create(
        slug=slug, name=name, actor=actor, signing_public_key=signing_public_key
    )
    _credential_shown(bank, actor, "onboarding")
    return bank, credential


@transaction.atomic
def bank_credential_reissue(*, bank: Bank, actor: str, grace: timedelta | None = None) -> str:
    """Rotate the bank's credential and record that the new one was shown to ``actor``.

    ``grace``: how long the old credential stays valid (None: the setting; see
    ``members.services.bank_rotate_credential``).
    """
    credential = bank_rotate_credential(bank=bank, actor=actor, grace=grace)
    bank.refresh_from_db(fields=["credential_prefix", "previous_credential_expires_at"])
    _credential_shown(bank, actor, "rotation")
    return credential


@transaction.atomic
def representative_link(*, bank: Bank, username: str, actor: str) -> BankRepresentative:
    """Let the existing user ``username`` see ``bank``'s page as its representative."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise ApplicationError(
            f"there is no user {username!r}; create the account on the Accounts page first"
        )
    if user.is_superuser or user.groups.filter(name__in=[OPERATORS_GROUP, AUDITORS_GROUP]).exists():
        raise ApplicationError(
            f"{username} is an operator or auditor; a representative account speaks for one "
            "bank only"
        )
    existing = BankRepresentative.objects.select_related("bank").filter(user=user).first()
    if existing is not None:
        raise Conflict(f"{username} already represents {existing.bank.slug}")
    link = BankRepresentative.objects.create(user=user, bank=bank, created_by=actor)
    audit_record(
        action="bank.representative_linked",
        actor=actor,
        target=bank,
        data={"bank": bank.slug, "user": username},
    )
    return link


@transaction.atomic
def representative_unlink(*, link: BankRepresentative, actor: str) -> None:
    bank, username = link.bank, link.user.get_username()
    link.delete()
    audit_record(
        action="bank.representative_unlinked",
        actor=actor,
        target=bank,
        data={"bank": bank.slug, "user": username},
    )

"""Writes the portal adds to the domain services, each in one transaction with its audit event.

Bank and policy changes themselves go through ``consortium.members.services`` and
``consortium.rounds.services``; this module only adds what exists because there is a web
page: who was shown a credential, which person represents which bank, and the accounts of
representatives and auditors (created, set up by a one-time link, deactivated).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.db import transaction
from django.db.models import TextChoices

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


# --- accounts of representatives and auditors ------------------------------------------


class AccountRole(TextChoices):
    AUDITOR = "auditor", "Auditor (reads the whole trail, changes nothing)"
    REPRESENTATIVE = "representative", "Bank representative (sees one bank's page)"


def _managed(user: Any) -> None:
    """Operators manage representatives and auditors here; operators themselves elsewhere."""
    if user.is_superuser or user.groups.filter(name=OPERATORS_GROUP).exists():
        raise ApplicationError(
            f"{user.get_username()} is an operator; operator accounts are managed with "
            "manage.py create_operator"
        )


@transaction.atomic
def account_create(
    *, username: str, email: str, role: str, bank: Bank | None, actor: str
) -> tuple[Any, str]:
    """A representative's or auditor's account without a password, and its setup token.

    The person chooses the password through the setup link; ``account_setup_issue`` makes a new one.
    """
    users = get_user_model()
    if users.objects.filter(username=username).exists():
        taken = f"an account {username!r} already exists"
        raise Conflict(taken, fields={"username": [taken]})
    if role == AccountRole.AUDITOR:
        bank = None  # an auditor sees every bank: a bank chosen by mistake is ignored
    elif bank is None:
        message = "a representative speaks for one bank: choose it"
        raise ApplicationError(message, fields={"bank": [message]})
    user = users(username=username, email=email)
    user.set_unusable_password()
    user.save()
    if bank is None:
        user.groups.add(Group.objects.get_or_create(name=AUDITORS_GROUP)[0])
    else:
        BankRepresentative.objects.create(user=user, bank=bank, created_by=actor)
    audit_record(
        action="account.created",
        actor=actor,
        target=user,
        data={"user": username, "role": role, "bank": bank.slug if bank else None},
    )
    return user, default_token_generator.make_token(user)


@transaction.atomic
def account_setup_issue(*, user: Any, actor: str) -> str:
    """A new setup token for ``user``; earlier links and any password stop working.

    Resetting the password hash is what invalidates the earlier tokens (Django's token
    covers it), so only the newest link sets a password.
    """
    user = get_user_model().objects.select_for_update().get(pk=user.pk)
    _managed(user)
    user.set_unusable_password()
    user.save(update_fields=["password"])
    audit_record(
        action="account.setup_issued", actor=actor, target=user, data={"user": user.username}
    )
    return str(default_token_generator.make_token(user))


@transaction.atomic
def account_setup_complete(*, user: Any) -> None:
    """Record that ``user`` chose a password through their setup link."""
    audit_record(
        action="account.setup_completed",
        actor=f"user:{user.get_username()}",
        target=user,
        data={"user": user.get_username()},
    )


@transaction.atomic
def account_set_active(*, user: Any, active: bool, actor: str) -> Any:
    """Deactivate (sign-in and open sessions refused) or reactivate an account."""
    # Locked so that two operators acting at once record one change.
    user = get_user_model().objects.select_for_update().get(pk=user.pk)
    _managed(user)
    if user.is_active == active:
        return user
    user.is_active = active
    user.save(update_fields=["is_active"])
    audit_record(
        action="account.reactivated" if active else "account.deactivated",
        actor=actor,
        target=user,
        data={"user": user.username},
    )
    return user

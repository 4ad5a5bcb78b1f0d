"""Bank authentication by API credential, and the permission classes built on it.

Credentials are made and hashed in ``consortium.members.credentials``. After a rotation
the previous credential is accepted too, until the node first uses the new one or the
grace period ends (``consortium.members.services.bank_rotate_credential``).
"""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from consortium.api.auth_cache import bank_cache
from consortium.members.credentials import (
    CREDENTIAL_PREFIX,
    bank_credential_switch,
    credential_hash,
)
from consortium.members.models import Bank, BankStatus
from consortium.portal.models import BankRepresentative


class BankPrincipal:
    """The authenticated caller when a bank node calls: wraps the Bank row."""

    is_authenticated = True
    is_staff = False

    def __init__(self, bank: Bank) -> None:
        self.bank = bank

    def __str__(self) -> str:
        return f"bank:{self.bank.slug}"


class BankCredentialAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer cbk_...`` identifies a bank node."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[BankPrincipal, None] | None:
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header.startswith(f"{self.keyword} "):
            return None
        credential = header[len(self.keyword) + 1 :].strip()
        parts = credential.split("_", 2)
        if len(parts) != 3 or parts[0] != CREDENTIAL_PREFIX:
            raise exceptions.AuthenticationFailed("malformed bank credential")
        presented = credential_hash(credential)
        # Reads may trust a recent answer (auth_cache.py states the bound); writes never do.
        ttl = settings.AUTH_CACHE_SECONDS if request.method in permissions.SAFE_METHODS else 0
        cached = bank_cache.get(presented, ttl)
        if cached is not None:
            if cached[1]:
                _grace_check(cached[0])
            return BankPrincipal(cached[0]), None
        bank, previous = _bank_of(parts[1])
        # Compare even when no row matched, so timing does not reveal valid prefixes.
        stored = "0" * 64
        if bank is not None:
            stored = bank.previous_credential_hash if previous else bank.credential_hash
        if not hmac.compare_digest(stored, presented) or bank is None:
            raise exceptions.AuthenticationFailed("invalid bank credential")
        if bank.status != BankStatus.ACTIVE:
            raise exceptions.AuthenticationFailed(
                f"bank {bank.slug} is {bank.status}; contact the consortium operator"
            )
        if previous:
            _grace_check(bank)
        elif bank.previous_credential_prefix:
            bank = bank_credential_switch(bank=bank)  # first call with the new credential
        bank_cache.put(presented, bank, previous, ttl)
        return BankPrincipal(bank), None

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


def _bank_of(prefix: str) -> tuple[Bank | None, bool]:
    """The bank whose current credential (False) or previous one (True) has ``prefix``."""
    bank = Bank.objects.filter(credential_prefix=prefix).first()
    if bank is not None:
        return bank, False
    return Bank.objects.filter(previous_credential_prefix=prefix).first(), True


def _grace_check(bank: Bank) -> None:
    """Refuse a replaced credential once its grace period is over."""
    until = bank.previous_credential_expires_at
    if until is None or timezone.now() >= until:
        raise exceptions.AuthenticationFailed(
            f"this credential of bank {bank.slug} was replaced and its grace period ended "
            f"{until.isoformat() if until else ''}; use the new credential"
        )


class LockoutAwareBasicAuthentication(authentication.BasicAuthentication):
    """HTTP basic auth (operators, auditors); a username locked out by django-axes gets 429.

    axes refuses the attempt inside ``authenticate()`` and flags the request; without this
    the API would answer a plain 401 and a locked-out operator could not tell why.
    """

    def authenticate_credentials(
        self, userid: str, password: str, request: Request | None = None
    ) -> tuple[Any, None]:
        try:
            return super().authenticate_credentials(userid, password, request)
        except exceptions.AuthenticationFailed:
            if request is not None and getattr(request, "axes_locked_out", False):
                raise exceptions.Throttled(
                    detail="too many failed sign-ins for this username from this address; "
                    "try again later"
                ) from None
            raise


class DenyAll(permissions.BasePermission):
    """The default: a view that does not declare its permissions lets nobody through."""

    message = "this endpoint declares no permissions, so it is closed to everyone"

    def has_permission(self, request: Request, view: Any) -> bool:
        return False


class IsBank(permissions.BasePermission):
    message = "this endpoint is for bank nodes (use a bank credential)"

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, BankPrincipal)


def user_is_operator(user: Any) -> bool:
    """A signed-in person (not a bank) in the operators group, or a superuser."""
    return bool(
        user is not None
        and not isinstance(user, BankPrincipal)
        and user.is_authenticated
        and (user.is_superuser or user.groups.filter(name="operators").exists())
    )


class IsOperator(permissions.BasePermission):
    message = "this endpoint is for consortium operators"

    def has_permission(self, request: Request, view: Any) -> bool:
        return user_is_operator(request.user)


class IsAuditor(permissions.BasePermission):
    """Auditors read the whole trail and export it; every write is refused to them."""

    message = "this endpoint is for auditors"

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(
            user is not None
            and not isinstance(user, BankPrincipal)
            and user.is_authenticated
            and request.method in permissions.SAFE_METHODS
            and user.groups.filter(name="auditors").exists()
        )


class IsOperatorOrAuditor(permissions.BasePermission):
    message = "this endpoint is for consortium operators and auditors"

    def has_permission(self, request: Request, view: Any) -> bool:
        return IsOperator().has_permission(request, view) or IsAuditor().has_permission(
            request, view
        )


def request_bank(request: Request) -> Bank:
    """The calling bank's row, for views behind :class:`IsBank`.

    ``request.user`` is typed as a Django user; this narrows it. A caller that is not a
    bank (a view without ``IsBank``) gets the same 403 as ``IsBank`` would give.
    """
    user = request.user
    if not isinstance(user, BankPrincipal):
        raise exceptions.PermissionDenied(IsBank.message)
    return user.bank


def representative_link(user: Any) -> BankRepresentative | None:
    """The bank a signed-in person (not a bank node) speaks for, whatever its status."""
    if user is None or isinstance(user, BankPrincipal) or not user.is_authenticated:
        return None
    return BankRepresentative.objects.select_related("bank").filter(user=user).first()


class IsRepresentative(permissions.BasePermission):
    """A person linked to an active member bank, reading: they see what their bank sees.

    A representative of a suspended or revoked bank sees nothing, as the bank's own
    credential does (refused with the bank's status in the message).
    """

    message = "this endpoint is for member banks' representatives"

    def has_permission(self, request: Request, view: Any) -> bool:
        link = representative_link(request.user)
        if link is None or request.method not in permissions.SAFE_METHODS:
            return False
        if link.bank.status != BankStatus.ACTIVE:
            self.message = (
                f"bank {link.bank.slug} is {link.bank.status}; its representatives see nothing"
            )
            return False
        return True


class IsMemberOrStaff(permissions.BasePermission):
    """Banks (active credential), their representatives (reading), operators and auditors.

    A signed-in person with none of these roles gets 403: an account alone shows nothing.
    """

    message = "this endpoint is for member banks, their representatives, operators and auditors"

    def has_permission(self, request: Request, view: Any) -> bool:
        if IsBank().has_permission(request, view):
            return True
        if IsOperatorOrAuditor().has_permission(request, view):
            return True
        representative = IsRepresentative()
        if representative.has_permission(request, view):
            return True
        if representative.message != IsRepresentative.message:
            self.message = representative.message  # name the bank's status
        return False


def caller_bank(request: Request) -> Bank | None:
    """The bank whose data this caller may see: its own (a node or a representative).

    ``None`` for staff, who see every bank's; anybody else is refused here too, so that a
    view that forgot its permission still shows nobody everything.
    """
    user = request.user
    if isinstance(user, BankPrincipal):
        bank: Bank = user.bank
        return bank
    if IsOperatorOrAuditor().has_permission(request, None):
        return None
    if IsRepresentative().has_permission(request, None):
        link = representative_link(user)
        assert link is not None  # IsRepresentative found it
        return link.bank
    raise exceptions.PermissionDenied(IsMemberOrStaff.message)


def actor_of(request: Request) -> str:
    """How the audit trail names whoever made this request."""
    user = request.user
    if isinstance(user, BankPrincipal):
        return str(user)
    return f"user:{getattr(user, 'username', 'anonymous')}"

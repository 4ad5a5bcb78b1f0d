"""Who is looking: the three portal roles and the decorator every portal view goes through.

Operators are superusers or members of the group "operators", auditors are in the group
"auditors", and bank representatives have a :class:`BankRepresentative` link. A user with
several roles gets the strongest one (operator, then auditor, then representative).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from consortium.members.models import Bank
from consortium.portal.models import BankRepresentative

OPERATORS_GROUP = "operators"
AUDITORS_GROUP = "auditors"

# Pages are built by us from our own static files; nothing inline, nothing from elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class Role(enum.StrEnum):
    OPERATOR = "operator"
    AUDITOR = "auditor"
    BANK_REP = "bank_rep"


ANY_ROLE = frozenset(Role)
STAFF = frozenset({Role.OPERATOR, Role.AUDITOR})


@dataclass(frozen=True)
class Viewer:
    """The signed-in person as the portal sees them."""

    username: str
    role: Role | None
    bank: Bank | None = None

    @property
    def actor(self) -> str:
        """How the audit trail names this person (the same form the REST API uses)."""
        return f"user:{self.username}"

    @property
    def role_label(self) -> str:
        if self.role == Role.BANK_REP and self.bank is not None:
            return f"representative of {self.bank.slug}"
        return {Role.OPERATOR: "operator", Role.AUDITOR: "auditor (read-only)"}.get(
            self.role,  # type: ignore[arg-type]
            "no role",
        )

    @property
    def is_operator(self) -> bool:
        return self.role == Role.OPERATOR

    def can_see_bank(self, bank: Bank) -> bool:
        if self.role in STAFF:
            return True
        return self.bank is not None and self.bank.pk == bank.pk


def viewer_of(request: HttpRequest) -> Viewer:
    """Resolve (once per request) the role of the signed-in user: at most two queries."""
    cached: Viewer | None = getattr(request, "_portal_viewer", None)
    if cached is not None:
        return cached
    user: Any = request.user
    viewer = Viewer(username=user.get_username(), role=None)
    if user.is_superuser:
        viewer = Viewer(user.get_username(), Role.OPERATOR)
    else:
        groups = set(user.groups.values_list("name", flat=True))
        if OPERATORS_GROUP in groups:
            viewer = Viewer(user.get_username(), Role.OPERATOR)
        elif AUDITORS_GROUP in groups:
            viewer = Viewer(user.get_username(), Role.AUDITOR)
        else:
            link = BankRepresentative.objects.select_related("bank").filter(user=user).first()
            if link is not None:
                viewer = Viewer(user.get_username(), Role.BANK_REP, link.bank)
    request._portal_viewer = viewer  # type: ignore[attr-defined,unused-ignore]
    return viewer


View = Callable[..., HttpResponse]
_Response = TypeVar("_Response", bound=HttpResponseBase)


def portal_view(
    *, roles: frozenset[Role] = frozenset(), post_roles: frozenset[Role] = frozenset()
) -> Callable[[View], View]:
    """Guard a portal view: sign-in, role, and the headers every portal page carries.

    ``roles`` may GET (and HEAD) the page; ``post_roles`` may POST to it; both default to
    nobody. Every other method and every other role gets 403. Anonymous visitors are sent
    to the sign-in page.
    """

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            viewer = viewer_of(request)
            allowed = post_roles if request.method == "POST" else roles
            if request.method not in {"GET", "HEAD", "POST"} or viewer.role not in allowed:
                raise PermissionDenied("your role may not do this")
            response = view(request, viewer, *args, **kwargs)
            return secure_headers(response)

        return wrapper

    return decorate


def with_secure_headers(
    view: Callable[..., HttpResponseBase],
) -> Callable[..., HttpResponseBase]:
    """The portal's headers for a view that is not behind :func:`portal_view` (sign-in)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return secure_headers(view(request, *args, **kwargs))

    return wrapper


def secure_headers(response: _Response) -> _Response:
    """Pages show audit data and, once, credentials: never cache them; no inline code."""
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers["Cache-Control"] = "no-store"
    return response

"""Accounts of representatives and auditors: the operator creates, sets up and deactivates them.

No back office needed: an account is made without a password and the person chooses
one through a one-time setup link, shown once to the operator (like a bank credential),
who hands it over. Deactivating asks first.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.views import PasswordResetConfirmView
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse, reverse_lazy
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.views.decorators.http import require_POST

from consortium.api.errors import ApplicationError
from consortium.portal import selectors, services
from consortium.portal.access import Role, Viewer, portal_view, secure_headers
from consortium.portal.forms import AccountCreateForm
from consortium.portal.views.common import (
    confirmation_page,
    form_submit,
    is_confirmed,
    render_page,
)

OPERATOR = frozenset({Role.OPERATOR})


@portal_view(roles=OPERATOR, post_roles=OPERATOR)
def account_list(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    form = AccountCreateForm(request.POST or None)
    if request.method == "POST":
        done = form_submit(
            form, lambda: services.account_create(actor=viewer.actor, **form.cleaned_data)
        )
        if done is not None:
            user, token = done
            return _setup_link_page(request, viewer, user, token, created=True)
    context = {"form": form, "accounts": selectors.account_list()}
    return render_page(
        request, viewer, "portal/accounts.html", context, 400 if form.errors else 200
    )


def _setup_link_page(
    request: HttpRequest, viewer: Viewer, user: Any, token: str, *, created: bool
) -> HttpResponse:
    """Show a setup link once. Rendered straight from the POST: it is kept nowhere else."""
    path = reverse(
        "portal:account-setup", args=[urlsafe_base64_encode(force_bytes(user.pk)), token]
    )
    context = {"account": user, "link": request.build_absolute_uri(path), "created": created}
    return render_page(request, viewer, "portal/account_setup_link.html", context)


def _account(pk: int) -> Any:
    return get_object_or_404(get_user_model(), pk=pk)


def _refused(request: HttpRequest, exc: ApplicationError) -> HttpResponse:
    messages.error(request, exc.message)
    return redirect("portal:accounts")


@require_POST
@portal_view(post_roles=OPERATOR)
def account_setup_resend(request: HttpRequest, viewer: Viewer, pk: int) -> HttpResponse:
    user = _account(pk)
    if user.has_usable_password() and not is_confirmed(request):
        return confirmation_page(
            request,
            viewer,
            title=f"Send {user.username} a new setup link?",
            consequence=f"{user.username}'s current password stops working now; they choose "
            "a new one through the link shown on the next page.",
            button="Yes, reset and show the link",
            back=reverse("portal:accounts"),
        )
    try:
        token = services.account_setup_issue(user=user, actor=viewer.actor)
    except ApplicationError as exc:
        return _refused(request, exc)
    return _setup_link_page(request, viewer, user, token, created=False)


@require_POST
@portal_view(post_roles=OPERATOR)
def account_deactivate(request: HttpRequest, viewer: Viewer, pk: int) -> HttpResponse:
    user = _account(pk)
    if not is_confirmed(request):
        return confirmation_page(
            request,
            viewer,
            title=f"Deactivate {user.username}?",
            consequence=f"{user.username} is signed out and cannot sign in until an operator "
            "reactivates the account. The account and its history stay.",
            button=f"Yes, deactivate {user.username}",
            back=reverse("portal:accounts"),
        )
    return _set_active(request, viewer, user, active=False)


@require_POST
@portal_view(post_roles=OPERATOR)
def account_reactivate(request: HttpRequest, viewer: Viewer, pk: int) -> HttpResponse:
    return _set_active(request, viewer, _account(pk), active=True)


def _set_active(request: HttpRequest, viewer: Viewer, user: Any, *, active: bool) -> HttpResponse:
    try:
        services.account_set_active(user=user, active=active, actor=viewer.actor)
    except ApplicationError as exc:
        return _refused(request, exc)
    messages.success(request, f"{user.username} {'reactivated' if active else 'deactivated'}.")
    return redirect("portal:accounts")


class AccountSetupView(PasswordResetConfirmView):
    """The person's own page from their setup link: choose a password, then sign in."""

    template_name = "portal/account_setup.html"
    success_url = reverse_lazy("portal:login")

    def dispatch(self, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = super().dispatch(*args, **kwargs)
        if response.status_code == 200 and not self.validlink:
            # A used, replaced or made-up link: the page explains, the status says so.
            response.status_code = 404
        return secure_headers(response)

    def form_valid(self, form: Any) -> HttpResponse:
        with transaction.atomic():
            response = super().form_valid(form)
            services.account_setup_complete(user=form.user)
        messages.success(self.request, "Your password is set. Sign in with it.")
        return response

"""Member banks: the list, onboarding, and a bank's page with the operator's actions on it.

Every change goes through ``consortium.members.services`` (or ``portal.services``, which
wraps them); a refusal is shown on the page with the service's own message.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from consortium.members import selectors as members_selectors
from consortium.members import services as member_services
from consortium.members.models import Bank, BankStatus
from consortium.portal import selectors, services
from consortium.portal.access import ANY_ROLE, STAFF, Role, Viewer, portal_view
from consortium.portal.forms import (
    BankOnboardForm,
    BankStatusForm,
    CredentialRotateForm,
    RepresentativeForm,
    SigningKeyForm,
)
from consortium.portal.models import BankRepresentative
from consortium.portal.selectors_convergence import convergence
from consortium.portal.views.common import (
    auprc_chart,
    confirmation_page,
    epsilon_chart,
    form_submit,
    is_confirmed,
    paginate,
    render_page,
)
from consortium.rounds import selectors as rounds_selectors
from consortium.rounds.selectors_epsilon import epsilon_budget

OPERATOR = frozenset({Role.OPERATOR})
STATUS_OF_ACTION = {
    "suspend": BankStatus.SUSPENDED,
    "reactivate": BankStatus.ACTIVE,
    "revoke": BankStatus.REVOKED,
}


@portal_view(roles=STAFF)
def bank_list(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    banks = rounds_selectors.bank_table()
    status, query = request.GET.get("status", ""), request.GET.get("q", "").strip()
    if status in BankStatus.values:
        banks = banks.filter(status=status)
    if query:
        banks = banks.filter(Q(slug__icontains=query) | Q(name__icontains=query))
    context = {
        "page": paginate(request, banks),
        "epsilon_budget": epsilon_budget(),
        "statuses": BankStatus.choices,
        "status": status,
        "q": query,
    }
    return render_page(request, viewer, "portal/bank_list.html", context)


@portal_view(roles=OPERATOR, post_roles=OPERATOR)
def bank_onboard(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    form = BankOnboardForm(request.POST or None)
    if request.method == "POST":
        done = form_submit(
            form, lambda: services.bank_onboard(actor=viewer.actor, **form.cleaned_data)
        )
        if done is not None:
            bank, credential = done
            return _credential_page(request, viewer, bank, credential, onboarding=True)
    status = 400 if form.errors else 200
    return render_page(request, viewer, "portal/bank_onboard.html", {"form": form}, status)


def _credential_page(
    request: HttpRequest, viewer: Viewer, bank: Bank, credential: str, *, onboarding: bool
) -> HttpResponse:
    """Show a credential once. Rendered straight from the POST: it is kept nowhere else."""
    context = {"bank": bank, "credential": credential, "onboarding": onboarding}
    return render_page(request, viewer, "portal/credential.html", context)


def _bank_or_404(viewer: Viewer, slug: str) -> Bank:
    bank = members_selectors.bank_get(slug)
    # Another bank's page does not exist for a representative: not even its slug leaks.
    if bank is None or not viewer.can_see_bank(bank):
        raise Http404("no such bank")
    return bank


@portal_view(roles=ANY_ROLE)
def bank_detail(request: HttpRequest, viewer: Viewer, slug: str) -> HttpResponse:
    return _bank_page(request, viewer, _bank_or_404(viewer, slug))


def _bank_page(
    request: HttpRequest, viewer: Viewer, bank: Bank, status: int = 200, **forms: Any
) -> HttpResponse:
    staff = viewer.role in STAFF
    page = paginate(request, rounds_selectors.round_list_for_bank(bank), per_page=25)
    conv = convergence(bank=bank, with_consortium=staff)
    context: dict[str, Any] = {
        "bank": bank,
        "summary": selectors.bank_summary(bank),
        "served": rounds_selectors.served_model_for_bank(bank),
        "page": page,
        "rows": selectors.participation_rows(bank, list(page)),
        "events": selectors.bank_events(bank) if staff else [],
        "auprc_chart": auprc_chart(conv),
        "epsilon_chart": epsilon_chart(conv),
    }
    if viewer.is_operator:
        context.update(
            status_form=forms.get("status_form") or BankStatusForm(),
            key_form=forms.get("key_form") or SigningKeyForm(),
            rotate_form=CredentialRotateForm(),
            rep_form=forms.get("rep_form") or RepresentativeForm(),
        )
    return render_page(request, viewer, "portal/bank_detail.html", context, status)


# What each destructive status change does, in the words of its confirmation page.
CONSEQUENCE = {
    "suspend": "{bank} will be suspended: its node's calls are refused and its "
    "representatives see nothing until an operator reactivates it.",
    "revoke": "{bank} will be revoked: its node is refused for good. A revocation cannot "
    "be undone.",
}


@require_POST
@portal_view(post_roles=OPERATOR)
def bank_status(request: HttpRequest, viewer: Viewer, slug: str) -> HttpResponse:
    bank = _bank_or_404(viewer, slug)
    form = BankStatusForm(request.POST)
    action = form.cleaned_data["action"] if form.is_valid() else ""
    if action in CONSEQUENCE and not is_confirmed(request):
        return confirmation_page(
            request,
            viewer,
            title=f"{action.capitalize()} {bank.slug}?",
            consequence=f"{CONSEQUENCE[action].format(bank=bank.name)} "
            f"Reason recorded: {form.cleaned_data['reason']}",
            button=f"Yes, {action} {bank.slug}",
            back=reverse("portal:bank-detail", args=[bank.slug]),
            fields=form.cleaned_data,
        )
    done = form_submit(
        form,
        lambda: member_services.bank_set_status(
            bank=bank,
            status=STATUS_OF_ACTION[form.cleaned_data["action"]],
            actor=viewer.actor,
            reason=form.cleaned_data["reason"],
        ),
    )
    if done is None:
        return _bank_page(request, viewer, bank, 400, status_form=form)
    return _back_to_bank(request, bank, f"{bank.slug}: {form.cleaned_data['action']} done.")


def _back_to_bank(request: HttpRequest, bank: Bank, message: str) -> HttpResponse:
    """After an operator's action on the bank's page: say it worked, show the page again."""
    messages.success(request, message)
    return redirect("portal:bank-detail", slug=bank.slug)


@require_POST
@portal_view(post_roles=OPERATOR)
def bank_rotate_credential(request: HttpRequest, viewer: Viewer, slug: str) -> HttpResponse:
    bank = _bank_or_404(viewer, slug)
    form = CredentialRotateForm(request.POST)
    immediate = form.is_valid() and form.cleaned_data["immediate"]
    if not is_confirmed(request):
        grace = settings.CREDENTIAL_GRACE
        old = (
            "The current credential stops working at once."
            if immediate or not grace
            else "The current credential keeps working until the node first calls with the "
            f"new one, or for {grace} at most; then it is refused."
        )
        return confirmation_page(
            request,
            viewer,
            title=f"Issue a new API credential for {bank.slug}?",
            consequence=f"{old} The new credential is shown once, on the next page.",
            button="Yes, issue a new credential",
            back=reverse("portal:bank-detail", args=[bank.slug]),
            fields={"immediate": "on" if immediate else ""},
        )
    credential = services.bank_credential_reissue(
        bank=bank, actor=viewer.actor, grace=timedelta(0) if immediate else None
    )
    return _credential_page(request, viewer, bank, credential, onboarding=False)


@require_POST
@portal_view(post_roles=OPERATOR)
def bank_signing_key(request: HttpRequest, viewer: Viewer, slug: str) -> HttpResponse:
    bank = _bank_or_404(viewer, slug)
    form = SigningKeyForm(request.POST)
    done = form_submit(
        form,
        lambda: member_services.bank_register_signing_key(
            bank=bank, public_key_b64=form.cleaned_data["public_key"], actor=viewer.actor
        ),
    )
    if done is None:
        return _bank_page(request, viewer, bank, 400, key_form=form)
    return _back_to_bank(request, bank, f"{bank.slug}: new signing key registered.")


@require_POST
@portal_view(post_roles=OPERATOR)
def bank_representative_add(request: HttpRequest, viewer: Viewer, slug: str) -> HttpResponse:
    bank = _bank_or_404(viewer, slug)
    form = RepresentativeForm(request.POST)
    done = form_submit(
        form,
        lambda: services.representative_link(
            bank=bank, username=form.cleaned_data["username"], actor=viewer.actor
        ),
    )
    if done is None:
        return _bank_page(request, viewer, bank, 400, rep_form=form)
    return _back_to_bank(request, bank, f"{form.cleaned_data['username']} now represents {bank}.")


@require_POST
@portal_view(post_roles=OPERATOR)
def bank_representative_remove(
    request: HttpRequest, viewer: Viewer, slug: str, pk: int
) -> HttpResponse:
    bank = _bank_or_404(viewer, slug)
    link = get_object_or_404(BankRepresentative.objects.select_related("user"), pk=pk, bank=bank)
    if not is_confirmed(request):
        return confirmation_page(
            request,
            viewer,
            title=f"Remove {link.user.get_username()} as representative of {bank.slug}?",
            consequence=f"{link.user.get_username()} will no longer see {bank.name}'s page.",
            button="Yes, remove",
            back=reverse("portal:bank-detail", args=[bank.slug]),
        )
    services.representative_unlink(link=link, actor=viewer.actor)
    return _back_to_bank(request, bank, f"{link.user.get_username()} no longer represents {bank}.")

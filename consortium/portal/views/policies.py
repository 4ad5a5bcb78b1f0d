"""Round policies: versions side by side, a new version from an existing one, activation."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from consortium.api.errors import ApplicationError, refusal_record
from consortium.portal.access import ANY_ROLE, Role, Viewer, portal_view
from consortium.portal.forms import PolicyForm
from consortium.portal.views.common import form_submit, paginate, render_page
from consortium.rounds import selectors as rounds_selectors
from consortium.rounds import services
from consortium.rounds.models import RoundPolicy

OPERATOR = frozenset({Role.OPERATOR})


def _policy_or_404(pk: int) -> RoundPolicy:
    policy = rounds_selectors.policy_by_pk(pk)
    if policy is None:
        raise Http404(f"policy {pk} does not exist")
    return policy


@portal_view(roles=ANY_ROLE)
def policy_list(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    context = {"page": paginate(request, rounds_selectors.policy_table())}
    return render_page(request, viewer, "portal/policy_list.html", context)


@portal_view(roles=ANY_ROLE)
def policy_detail(request: HttpRequest, viewer: Viewer, pk: int) -> HttpResponse:
    policy = _policy_or_404(pk)
    context = {"policy": policy, "versions": rounds_selectors.policy_versions(policy)}
    return render_page(request, viewer, "portal/policy_detail.html", context)


@portal_view(roles=OPERATOR, post_roles=OPERATOR)
def policy_new(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    """A policy under a new name (version 1)."""
    form = PolicyForm(request.POST or None)
    if request.method == "POST":
        policy = form_submit(
            form,
            lambda: services.policy_create(
                name=form.cleaned_data["name"],
                actor=viewer.actor,
                activate=form.cleaned_data.get("activate", False),
                **form.policy_fields(),
            ),
        )
        if policy is not None:
            return _to_policy(request, policy, f"Policy {policy} created.")
    return _policy_form_page(request, viewer, form, base=None)


@portal_view(roles=OPERATOR, post_roles=OPERATOR)
def policy_new_version(request: HttpRequest, viewer: Viewer, pk: int) -> HttpResponse:
    """The next version of a policy, pre-filled from ``pk``; the base is never edited."""
    base = _policy_or_404(pk)
    form = PolicyForm(request.POST or None, base=base)

    def new_version() -> RoundPolicy:
        policy = services.policy_new_version(base=base, actor=viewer.actor, **form.policy_fields())
        if form.cleaned_data.get("activate") and not policy.active:
            services.policy_activate(policy=policy, actor=viewer.actor)
        return policy

    if request.method == "POST":
        policy = form_submit(form, new_version)
        if policy is not None:
            return _to_policy(request, policy, f"Policy {policy} created from {base}.")
    return _policy_form_page(request, viewer, form, base=base)


def _policy_form_page(
    request: HttpRequest, viewer: Viewer, form: PolicyForm, *, base: RoundPolicy | None
) -> HttpResponse:
    context = {"form": form, "base": base}
    return render_page(
        request, viewer, "portal/policy_form.html", context, 400 if form.errors else 200
    )


def _to_policy(request: HttpRequest, policy: RoundPolicy, message: str) -> HttpResponse:
    messages.success(request, message)
    return redirect("portal:policy-detail", pk=policy.pk)


@require_POST
@portal_view(post_roles=OPERATOR)
def policy_activate(request: HttpRequest, viewer: Viewer, pk: int) -> HttpResponse:
    policy = _policy_or_404(pk)
    try:
        services.policy_activate(policy=policy, actor=viewer.actor)
    except ApplicationError as exc:  # e.g. the banks' roster has not approved it
        refusal_record(exc)
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{policy} is now the active policy.")
    return redirect("portal:policy-detail", pk=policy.pk)

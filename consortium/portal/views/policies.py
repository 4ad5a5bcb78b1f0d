"""Round policies: versions side by side, what changed between two, the rounds a version ran,
a new version from an existing one (confirmed with its changes first), activation."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from consortium.api.errors import ApplicationError, refusal_record
from consortium.portal import selectors_policies
from consortium.portal.access import ANY_ROLE, STAFF, Role, Viewer, portal_view
from consortium.portal.forms import PolicyCompareForm, PolicyForm
from consortium.portal.policy_diff import policy_diff, policy_values
from consortium.portal.policy_fields import ckks_words, model_words
from consortium.portal.views.common import (
    CONFIRM_FIELD,
    form_submit,
    is_confirmed,
    paginate,
    render_page,
)
from consortium.rounds import selectors as rounds_selectors
from consortium.rounds import services
from consortium.rounds.models import RoundPolicy

OPERATOR = frozenset({Role.OPERATOR})
ROUNDS_PER_PAGE = 25


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
    context = {
        "policy": policy,
        "versions": rounds_selectors.policy_versions(policy),
        "previous": selectors_policies.policy_previous(policy),
        "effective": selectors_policies.policy_effective(policy),
        "kinds": selectors_policies.policy_round_kinds(policy),
        "rounds": paginate(request, selectors_policies.policy_rounds(policy), ROUNDS_PER_PAGE),
        "model_words": model_words(policy.model_spec),
        "ckks_words": ckks_words(policy.ckks_params),
        "round_links": viewer.role in STAFF,  # a representative has no round pages
    }
    return render_page(request, viewer, "portal/policy_detail.html", context)


@portal_view(roles=ANY_ROLE)
def policy_compare(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    """Any two versions field by field: ``?a=<pk>&b=<pk>`` (from a, to b)."""
    versions = selectors_policies.policy_choices()
    form = PolicyCompareForm(request.GET or None, versions=versions)
    context: dict[str, Any] = {"form": form, "changes": None}
    if form.is_valid():
        old, new = form.cleaned_data["a"], form.cleaned_data["b"]
        context.update(
            old=old, new=new, changes=policy_diff(policy_values(old), policy_values(new))
        )
    status = 400 if form.is_bound and form.errors else 200
    return render_page(request, viewer, "portal/policy_compare.html", context, status)


@portal_view(roles=OPERATOR, post_roles=OPERATOR)
def policy_new(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    """A policy under a new name (version 1), compared with the active one before saving."""
    form = PolicyForm(request.POST or None)
    if request.method == "POST":
        if not is_confirmed(request):
            return _confirm_or_form(request, viewer, form, base=None)
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
        if not is_confirmed(request):
            return _confirm_or_form(request, viewer, form, base=base)
        policy = form_submit(form, new_version)
        if policy is not None:
            return _to_policy(request, policy, f"Policy {policy} created from {base}.")
    return _policy_form_page(request, viewer, form, base=base)


def _confirm_or_form(
    request: HttpRequest, viewer: Viewer, form: PolicyForm, *, base: RoundPolicy | None
) -> HttpResponse:
    """The version as it would be saved and what changes, to confirm; or the form again,
    with its errors (checked as the save would check them) or to edit it further."""
    preview = None if "edit" in request.POST else form_submit(form, lambda: _preview(form, base))
    if preview is None:
        return _policy_form_page(request, viewer, form, base=base)
    against = base or selectors_policies.policy_active()
    fields = {k: v for k, v in request.POST.items() if k not in ("csrfmiddlewaretoken", "edit")}
    context = {
        "base": base,
        "preview": preview,
        "against": against,
        "changes": policy_diff(policy_values(against), policy_values(preview)) if against else [],
        "applies": selectors_policies.new_version_applies(
            base, activate=bool(form.cleaned_data.get("activate"))
        ),
        "fields": fields,
        "confirm_field": CONFIRM_FIELD,
    }
    return render_page(request, viewer, "portal/policy_confirm.html", context)


def _preview(form: PolicyForm, base: RoundPolicy | None) -> RoundPolicy:
    actor = "preview"
    if base is not None:
        return services.policy_preview_version(base=base, actor=actor, **form.policy_fields())
    return services.policy_preview(
        name=form.cleaned_data["name"], actor=actor, **form.policy_fields()
    )


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

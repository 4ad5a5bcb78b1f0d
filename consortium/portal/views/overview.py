"""The operator's consortium overview and the live progress of the round in flight."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone

from consortium.members import selectors as members_selectors
from consortium.portal import selectors
from consortium.portal.access import ANY_ROLE, STAFF, Role, Viewer, portal_view
from consortium.portal.selectors_convergence import convergence
from consortium.portal.views.common import auprc_chart, paginate, render_page
from consortium.rounds import selectors as rounds_selectors
from consortium.rounds.selectors_attention import (
    bank_list_needing_attention,
    rounds_closed_recent,
)
from consortium.rounds.selectors_epsilon import epsilon_budget, epsilon_highest_signed

if TYPE_CHECKING:  # annotations only: reads of the trail go through audit.selectors
    from audit.models import AuditEvent


@portal_view(roles=ANY_ROLE)
def overview(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    """Members, the round in flight, recent failures. A representative lands on their bank."""
    if viewer.role == Role.BANK_REP and viewer.bank is not None:
        return redirect("portal:bank-detail", slug=viewer.bank.slug)
    rejected = selectors.uploads_rejected_recent()
    budget = epsilon_budget()
    context = {
        "counts": members_selectors.bank_status_counts(),
        "epsilon_budget": budget,
        "epsilon_highest": epsilon_highest_signed(),
        "key_epoch": rounds_selectors.key_epoch_current_without_context(),
        "failed_rounds": rounds_selectors.round_list_failed_recent(),
        "rejected": rejected,
        "auprc_chart": auprc_chart(convergence()),
        **_attention_context(request, budget=budget, rejected=rejected),
        **_progress_context(),
    }
    return render_page(request, viewer, "portal/overview.html", context)


def _attention_context(
    request: HttpRequest, *, budget: float | None, rejected: list[AuditEvent]
) -> dict[str, object]:
    """One page of the banks needing attention, each with its reasons in words."""
    now = timezone.now()
    recent = rounds_closed_recent()
    flagged = selectors.refused_banks(rejected)
    banks = bank_list_needing_attention(recent=recent, budget=budget, flagged=flagged, now=now)
    page = paginate(request, banks)
    rows = selectors.attention_rows(page, recent=recent, budget=budget, flagged=flagged, now=now)
    return {"attention": page, "attention_rows": rows, "recent_rounds": recent}


@portal_view(roles=STAFF)
def progress(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    """The progress panel alone; the overview and round pages poll it every few seconds."""
    return render_page(request, viewer, "portal/partials/progress.html", _progress_context())


def _progress_context() -> dict[str, object]:
    rnd = rounds_selectors.round_in_flight_with_policy()
    return {
        "progress": selectors.round_progress(rnd) if rnd is not None else None,
        "last_closed": rounds_selectors.round_last_closed(),
    }

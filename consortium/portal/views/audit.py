"""The auditor's view of the trail: browse, filter, check the chain, export."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse

from audit.selectors import (
    audit_action_names,
    audit_chain_verify,
    audit_event_list,
    audit_head,
    audit_object_types,
)
from consortium.portal.access import STAFF, Viewer, portal_view
from consortium.portal.forms import AuditFilterForm
from consortium.portal.views.common import paginate, render_page

# The REST export (operators and auditors; the session cookie authenticates).
EXPORT_FORMATS = (
    ("zip", "Evidence pack (ZIP)"),
    ("pdf", "PDF report"),
    ("csv", "CSV"),
    ("json", "JSON (signed)"),
)
EXPORT_URL = "/api/v1/audit/report"
VERIFY_URL = "/api/v1/audit/verify"


@portal_view(roles=STAFF)
def audit_list(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    form = AuditFilterForm(
        request.GET or None,
        actions=audit_action_names(),
        object_types=audit_object_types(),
    )
    filters = form.filters() if request.GET else {}
    # The search box finds an actor by any part of its name ("bank:" lists every bank).
    filters["actor_contains"] = filters.pop("actor", "")
    snapshot = audit_head().seq
    context = {
        "form": form,
        "page": paginate(request, audit_event_list(newest_first=True, **filters)),
        "exports": _export_links(form if request.GET else None, snapshot),
        "snapshot": snapshot,
        "verify_url": VERIFY_URL,
    }
    return render_page(request, viewer, "portal/audit_list.html", context)


def _export_links(form: AuditFilterForm | None, snapshot: int) -> list[tuple[str, str]]:
    """Export buttons; a period chosen in the filter carries over to the report.

    Every button names the same snapshot (the head as this page shows it): the first
    export takes it and the others render it again, so PDF, CSV and JSON downloaded from
    this page are one report, although each download adds an event to the trail.
    """
    period = {}
    if form is not None and form.is_valid():
        period = {
            k: form.cleaned_data[k].isoformat() for k in ("since", "until") if form.cleaned_data[k]
        }
    return [
        (f"{EXPORT_URL}?{urlencode({'format': fmt, **period, 'at': snapshot})}", label)
        for fmt, label in EXPORT_FORMATS
    ]


@portal_view(roles=STAFF)
def audit_verification(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    """Walk the whole chain (the page loads this panel after itself: it reads every event)."""
    context = {"check": audit_chain_verify()}
    return render_page(request, viewer, "portal/partials/verification.html", context)

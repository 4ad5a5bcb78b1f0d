"""The roster page: members, version history, the pending change and objections (read-only).

Proposing and signing happen through the API and ``bank-node roster``; this page only
shows what the banks have signed and what is still missing, to every role alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from consortium.governance import selectors as roster
from consortium.governance.models import RosterVersion
from consortium.members.models import BankStatus
from consortium.portal.access import ANY_ROLE, Role, Viewer, portal_view
from consortium.portal.views.common import render_page
from governance import Pending, RosterState
from governance.encoding import key_hint

OBJECTIONS_SHOWN = 50


@dataclass(frozen=True)
class PendingRow:
    """A pending version and where its approvals stand (``reason`` when it can never pass)."""

    version: RosterVersion
    pending: Pending | None
    reason: str


def _members(state: RosterState | None) -> list[dict[str, Any]]:
    if state is None:
        return []
    return [
        {
            "bank_id": m.bank_id,
            "name": m.name,
            "status": str(m.status),
            "signing_key": key_hint(m.signing_key),
            "agreement_key": key_hint(m.agreement_key),
        }
        for m in state.members
    ]


def _pending(state: RosterState | None) -> list[PendingRow]:
    rows = []
    for version in roster.roster_pending():
        pending = roster.version_pending(version, state)
        if isinstance(pending, str):
            rows.append(PendingRow(version, None, pending))
        else:
            rows.append(PendingRow(version, pending, ""))
    return rows


def _may_see(viewer: Viewer) -> bool:
    # A suspended or revoked bank's representative sees nothing, like its node.
    if viewer.role != Role.BANK_REP:
        return True
    return viewer.bank is not None and viewer.bank.status == BankStatus.ACTIVE


@portal_view(roles=ANY_ROLE)
def roster_page(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    if not _may_see(viewer):
        raise PermissionDenied("your bank is not active")
    state = roster.roster_state()
    context = {
        "state": state,
        "members": _members(state),
        "versions": list(roster.roster_versions()),
        "pending": _pending(state),
        "objections": list(roster.objection_list()[:OBJECTIONS_SHOWN]),
    }
    return render_page(request, viewer, "portal/roster.html", context)

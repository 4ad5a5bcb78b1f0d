"""Exports of the audit report with the portal's rounds, key epochs and banks in it."""

from __future__ import annotations

from audit import services
from audit.report import Selection
from audit.services import Export
from consortium.audit_api.selectors import PortalReportSource


def audit_report_export(
    *, selection: Selection, fmt: str, actor: str, at: int | None = None
) -> Export:
    """Render the snapshot of ``selection`` at event ``at`` (None: now), then record it.

    See ``audit.services.audit_report_export``; this supplies the portal's tables.
    """
    return services.audit_report_export(
        selection=selection, fmt=fmt, actor=actor, source=PortalReportSource(), at=at
    )

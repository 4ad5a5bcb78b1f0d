"""Exports of the audit report with the portal's rounds, key epochs and banks in it."""

from __future__ import annotations

from audit import services
from audit.report import Selection
from audit.services import Export
from consortium.audit_api.selectors import PortalReportSource


def audit_report_export(*, selection: Selection, fmt: str, actor: str) -> Export:
    """Record the export, sign the head, then build and render the portal's report.

    See ``audit.services.audit_report_export``; this supplies the portal's tables.
    """
    return services.audit_report_export(
        selection=selection, fmt=fmt, actor=actor, source=PortalReportSource()
    )

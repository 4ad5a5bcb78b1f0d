"""Rounds: the history with its convergence plot, and one round in detail."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from django.http import Http404, HttpRequest, HttpResponse

from consortium.governance import selectors as roster
from consortium.members.models import BankStatus
from consortium.portal import selectors, selectors_round
from consortium.portal.access import STAFF, Viewer, portal_view, secure_headers
from consortium.portal.selectors_convergence import convergence
from consortium.portal.views import params
from consortium.portal.views.common import auprc_chart, epsilon_chart, paginate, render_page
from consortium.rounds import secagg_selectors
from consortium.rounds import selectors as rounds_selectors
from consortium.rounds.models import IN_FLIGHT_STATES, MetricReport, Round, RoundState
from consortium.rounds.selectors_digests import model_digests
from consortium.rounds.selectors_epsilon import epsilon_signed_by_round


@portal_view(roles=STAFF)
def round_list(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    state = request.GET.get("state", "")
    rounds = rounds_selectors.round_table()
    if state in RoundState.values:
        rounds = rounds.filter(state=state)
    try:
        window = params.chart_window(request)
    except params.BadQuery as exc:
        return params.bad_query_page(request, viewer, exc)
    page = paginate(request, rounds)
    conv = convergence(window=window)
    context = {
        "page": page,
        "means": selectors.auprc_means(r.pk for r in page),
        # Derived from the banks' verified verdicts: rejected candidates are marked.
        "gates": selectors.gate_decisions(page),
        "states": RoundState.choices,
        "state": state,
        "convergence": conv,
        "window": window,
        "auprc_chart": auprc_chart(conv),
        "epsilon_chart": epsilon_chart(conv),
    }
    return render_page(request, viewer, "portal/round_list.html", context)


@portal_view(roles=STAFF)
def round_detail(request: HttpRequest, viewer: Viewer, number: int) -> HttpResponse:
    rnd = _round_or_404(number)
    try:
        window, wanted = params.chart_window(request), params.row_filter(request)
    except params.BadQuery as exc:
        return params.bad_query_page(request, viewer, exc)
    # Signed with each upload: the ε the budget check uses, not the one a report carries.
    epsilon = epsilon_signed_by_round([rnd.number]).get(rnd.number, {})
    rows = selectors_round.submission_rows(rnd, epsilon)
    in_flight = rnd.state in IN_FLIGHT_STATES
    conv = convergence(up_to=rnd.number, window=window)
    objections = list(roster.objection_list_for_round(rnd.number))
    reports = rounds_selectors.metric_report_list_for_round(rnd)
    context = {
        "round": rnd,
        "has_newer": Round.objects.filter(number__gt=rnd.number).exists(),
        "rows": rows,
        **_tables(request, rnd, rows, reports, wanted),
        "upload_bytes": sum(r.submission.size_bytes for r in rows),
        "all_signatures_ok": all(r.signature_ok for r in rows),
        "digests": model_digests(reports),  # server optimisers: every node's model agrees
        "epsilon": epsilon,
        "progress": selectors.round_progress(rnd) if in_flight else None,
        # v2: each phase with its deadline, who has acted and who the round still waits on.
        "secagg": secagg_selectors.secagg_progress(rnd)
        if secagg_selectors.round_is_masked(rnd)
        else None,
        "timings": _timings(rnd),
        "convergence": conv,
        "window": window,
        "auprc_chart": auprc_chart(conv, marker=rnd.number),
        "epsilon_chart": epsilon_chart(conv, marker=rnd.number),
        # Derived from the banks' signed objections and clearances, never a stored flag;
        # only looked up when the round has objections (most have none: one query less).
        "dispute": roster.dispute_get(rnd.number) if objections else None,
        "objections": objections,
        "gate": selectors.gate_panel(rnd),
    }
    return render_page(request, viewer, "portal/round_detail.html", context)


def _round_or_404(number: int) -> Round:
    rnd = rounds_selectors.round_detail(number)
    if rnd is None:
        raise Http404(f"round {number} does not exist")
    return rnd


def _tables(
    request: HttpRequest,
    rnd: Round,
    rows: list[selectors_round.SubmissionRow],
    reports: list[MetricReport],
    wanted: selectors_round.RowFilter,
) -> dict[str, object]:
    """The round's long lists: filtered and paged submissions and reports, the manifest."""
    shown = selectors_round.submission_rows_filtered(rows, wanted)
    shown_reports = selectors_round.report_rows_filtered(reports, wanted)
    return {
        "filter": wanted,
        "submissions": paginate(request, shown),
        "reports": paginate(request, shown_reports, param="rpage"),
        "reports_total": len(reports),
        "manifest_rows": selectors_round.manifest_rows(rnd, rows),
        "flags": selectors_round.FLAGS,
        "sorts": selectors_round.SUBMISSION_SORTS,
        "report_sorts": selectors_round.REPORT_SORTS,
        "statuses": BankStatus.choices,
    }


@portal_view(roles=STAFF)
def round_manifest(request: HttpRequest, viewer: Viewer, number: int) -> HttpResponse:
    """The published manifest as the scheduler signed it into the trail, as a download."""
    rnd = _round_or_404(number)
    if not rnd.manifest:
        raise Http404(f"round {number} has no manifest: it was not published")
    body = json.dumps(rnd.manifest, indent=2, sort_keys=True, ensure_ascii=False)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="round-{number}-manifest.json"'
    return secure_headers(response)


def _timings(rnd: Round) -> list[tuple[str, datetime | None, timedelta | None]]:
    """Each milestone of the round, and how long the phase that ends there took."""
    collected = rnd.aggregating_at
    closed_label = {RoundState.PUBLISHED: "Published", RoundState.FAILED: "Failed"}.get(
        RoundState(rnd.state), "Closed"
    )
    return [
        ("Opened", rnd.opened_at, None),
        ("Deadline (time allowed)", rnd.deadline_at, rnd.deadline_at - rnd.opened_at),
        (
            "All updates in (collecting took)",
            collected,
            collected - rnd.opened_at if collected else None,
        ),
        (
            f"{closed_label} (aggregation took)" if collected else closed_label,
            rnd.closed_at,
            rnd.closed_at - (collected or rnd.opened_at) if rnd.closed_at else None,
        ),
    ]

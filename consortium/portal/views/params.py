"""The query parameters of the round and overview pages, checked: a bad one is a 400 that
says what is wrong, never a 500 and never silently ignored."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from consortium.members.models import BankStatus
from consortium.portal.access import Viewer
from consortium.portal.selectors_convergence import SELECTED_MAX, ChartWindow, unknown_banks
from consortium.portal.selectors_round import FLAGS, REPORT_SORTS, SUBMISSION_SORTS, RowFilter
from consortium.portal.views.common import render_page


class BadQuery(ValueError):
    """A query parameter the page cannot use; the message says which and why."""


def _round_number(request: HttpRequest, name: str) -> int | None:
    raw = request.GET.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise BadQuery(f"?{name}= must be a round number (1 or more), not {raw[:40]}")
    return int(raw)


def chart_window(request: HttpRequest) -> ChartWindow:
    """``?from=&to=`` (round numbers) and ``?banks=a,b`` (at most ``SELECTED_MAX`` slugs)."""
    first, last = _round_number(request, "from"), _round_number(request, "to")
    if first is not None and last is not None and first > last:
        raise BadQuery(f"?from={first} is after ?to={last}: the window would be empty")
    raw = request.GET.get("banks", "")
    slugs = tuple(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))
    if len(slugs) > SELECTED_MAX:
        raise BadQuery(f"?banks= names {len(slugs)} banks; a chart draws at most {SELECTED_MAX}")
    unknown = unknown_banks(slugs) if slugs else []
    if unknown:
        raise BadQuery(f"?banks= names no bank called {', '.join(unknown)[:200]}")
    return ChartWindow(first, last, slugs)


def _choice(request: HttpRequest, name: str, allowed: object, default: str = "") -> str:
    value = request.GET.get(name, "").strip()
    if value and value not in allowed:  # type: ignore[operator]
        options = ", ".join(sorted(allowed))  # type: ignore[call-overload]
        raise BadQuery(f"?{name}={value[:40]} is not one of: {options}")
    return value or default


def row_filter(request: HttpRequest) -> RowFilter:
    """``?q=`` (bank slug or name), ``?status=``, ``?flag=``, ``?sort=``, ``?rsort=``."""
    return RowFilter(
        q=request.GET.get("q", "").strip()[:100],
        status=_choice(request, "status", set(BankStatus.values)),
        flag=_choice(request, "flag", set(FLAGS)),
        sort=_choice(request, "sort", set(SUBMISSION_SORTS), "bank"),
        report_sort=_choice(request, "rsort", set(REPORT_SORTS), "bank"),
    )


def bad_query_page(request: HttpRequest, viewer: Viewer, exc: BadQuery) -> HttpResponse:
    context = {"message": str(exc), "back": request.path}
    return render_page(request, viewer, "portal/bad_query.html", context, status=400)

"""What every portal view shares: pagination, rendering, and the two plots."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import SafeString, mark_safe

from consortium.portal.access import Viewer
from consortium.portal.charts import line_chart
from consortium.portal.selectors import Convergence

PAGE_SIZE = 50


def paginate(request: HttpRequest, items: Any, per_page: int = PAGE_SIZE) -> Page:
    """One page of ``items``; a missing or bad ``?page=`` gives the first or last page."""
    return Paginator(items, per_page).get_page(request.GET.get("page"))


def render_page(
    request: HttpRequest,
    viewer: Viewer,
    template: str,
    context: dict[str, Any],
    status: int = 200,
) -> HttpResponse:
    return render(request, template, {"viewer": viewer, **context}, status=status)


def _svg(markup: str) -> SafeString:
    # line_chart escapes every piece of text it draws; the rest is numbers it formatted.
    return mark_safe(markup)  # noqa: S308


def auprc_chart(conv: Convergence, marker: int | None = None) -> SafeString | None:
    if not conv.auprc:
        return None
    return _svg(
        line_chart(
            conv.auprc,
            title="Reported AUPRC of the federated model per round",
            y_label="AUPRC (held-out, self-reported)",
            marker_x=marker,
        )
    )


def epsilon_chart(conv: Convergence, marker: int | None = None) -> SafeString | None:
    if not conv.epsilon:
        return None
    return _svg(
        line_chart(
            conv.epsilon,
            title="Differential-privacy budget spent (ε) per round",
            y_label="ε spent (self-reported)",
            marker_x=marker,
            height=240,
        )
    )

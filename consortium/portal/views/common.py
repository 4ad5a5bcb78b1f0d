"""What every portal view shares: pagination, rendering, form submission, confirmations,
the two plots."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.safestring import SafeString, mark_safe

from consortium.api.errors import ApplicationError
from consortium.portal.access import Viewer
from consortium.portal.charts import line_chart
from consortium.portal.selectors_convergence import Convergence

PAGE_SIZE = 50

_Done = TypeVar("_Done")


class ServiceForm(Protocol):
    """A portal form that can show a service's refusal (``forms.ServiceErrorsMixin``)."""

    def is_valid(self) -> bool: ...

    def add_service_error(self, exc: ApplicationError) -> None: ...


def form_submit(form: ServiceForm, action: Callable[[], _Done]) -> _Done | None:
    """``action()``'s result once ``form`` is valid, else None.

    A service's refusal (``ApplicationError``) is attached to the form and gives None, so
    the view re-renders the form with the reason. ``action`` must return a row (not None)
    and may read ``form.cleaned_data``: it runs only after validation.
    """
    if not form.is_valid():
        return None
    try:
        return action()
    except ApplicationError as exc:
        form.add_service_error(exc)
        return None


# A destructive action's form is posted twice: first without this field, which shows a
# confirmation page (no JavaScript needed), then from that page with it.
CONFIRM_FIELD = "confirmed"


def is_confirmed(request: HttpRequest) -> bool:
    return request.POST.get(CONFIRM_FIELD) == "yes"


def confirmation_page(
    request: HttpRequest,
    viewer: Viewer,
    *,
    title: str,
    consequence: str,
    button: str,
    back: str,
    fields: dict[str, Any] | None = None,
) -> HttpResponse:
    """Ask before a destructive action: the same form again, posted with ``confirmed``."""
    context = {
        "title": title,
        "consequence": consequence,
        "button": button,
        "back": back,
        "action": request.path,
        "fields": {k: v for k, v in (fields or {}).items() if v not in (None, False, "")},
        "confirm_field": CONFIRM_FIELD,
    }
    return render_page(request, viewer, "portal/confirm.html", context)


def paginate(
    request: HttpRequest, items: Any, per_page: int = PAGE_SIZE, param: str = "page"
) -> Page:
    """One page of ``items``; a missing or bad ``?page=`` (or ``param``) gives the first or
    last page."""
    return Paginator(items, per_page).get_page(request.GET.get(param))


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
            band=conv.auprc_band,
        )
    )


def epsilon_chart(conv: Convergence, marker: int | None = None) -> SafeString | None:
    if not conv.epsilon:
        return None
    return _svg(
        line_chart(
            conv.epsilon,
            title="Differential-privacy budget spent (ε) per round, as each bank signed it",
            y_label="ε spent (signed with the upload)",
            marker_x=marker,
            height=240,
            reference=conv.epsilon_budget,
            band=conv.epsilon_band,
        )
    )

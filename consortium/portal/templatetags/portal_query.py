"""Template helpers for long, filtered lists: links and forms that keep the page's query,
and a metrics report in words rather than JSON."""

from __future__ import annotations

import math
from typing import Any

from django import template
from django.utils.html import format_html_join
from django.utils.safestring import SafeString

register = template.Library()

# Page numbers of each list on a page: a new filter starts every list at its first page.
PAGE_PARAMS = ("page", "rpage")


@register.simple_tag(takes_context=True)
def page_url(context: dict[str, Any], param: str, number: int) -> str:
    """``?<the current query>`` with ``param`` set to ``number`` (filters are kept)."""
    query = context["request"].GET.copy()
    query[param] = str(number)
    return "?" + query.urlencode()


@register.simple_tag(takes_context=True)
def hidden_params(context: dict[str, Any], replaced: str) -> SafeString:
    """Hidden inputs for the current query's parameters a form does not set itself.

    ``replaced`` is the comma-separated names the form has fields for; page numbers are
    dropped, so a changed filter shows its first page.
    """
    skip = {*replaced.split(","), *PAGE_PARAMS}
    items = [
        (k, v) for k, values in context["request"].GET.lists() if k not in skip for v in values
    ]
    return format_html_join("", '<input type="hidden" name="{}" value="{}">', items)


def _words(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:.4g}" if math.isfinite(value) else "not a number"
    if isinstance(value, dict | list):
        return f"{len(value)} values"
    return str(value)[:60]


@register.filter
def metric_items(metrics: Any, leave_out: str = "") -> list[tuple[str, str]]:
    """A metrics report's other figures as (name in words, value) pairs, by name."""
    if not isinstance(metrics, dict):
        return []
    skip = set(leave_out.split(","))
    return [
        (str(k).replace("_", " "), _words(v)) for k, v in sorted(metrics.items()) if k not in skip
    ]

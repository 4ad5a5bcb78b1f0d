"""Template helpers of the portal: who is looking, and how numbers and digests read."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

from django import template
from django.http import HttpRequest

from consortium.portal.access import Viewer, viewer_of

register = template.Library()


@register.simple_tag(takes_context=True)
def portal_viewer(context: dict[str, Any]) -> Viewer | None:
    """The signed-in viewer, for pages (such as 403 and 404) whose view did not pass one."""
    request: HttpRequest | None = context.get("request")
    if request is None or not request.user.is_authenticated:
        return None
    return viewer_of(request)


@register.filter
def short(value: str | None, length: int = 12) -> str:
    """The start of a digest or key: enough to tell values apart, short enough for a table."""
    if not value:
        return ""
    return value if len(value) <= length else f"{value[:length]}…"


@register.filter
def duration(value: timedelta | None) -> str:
    """``timedelta`` as a person says it: "2 h 5 min", "4 min 12 s", "0.8 s"."""
    if value is None:
        return "—"
    seconds = value.total_seconds()
    if seconds < 0:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


@register.filter
def span(start: datetime | None, end: datetime | None) -> str:
    """How long from ``start`` to ``end``: ``{{ round.opened_at|span:round.closed_at }}``."""
    if start is None or end is None:
        return "—"
    return duration(end - start)


@register.filter
def startswith(value: str | None, prefix: str) -> bool:
    return bool(value) and str(value).startswith(prefix)


@register.filter
def metric(value: Any, digits: int = 3) -> str:
    """A reported number with ``digits`` decimals, or a dash when absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}f}"


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@register.filter
def compact_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))


@register.filter
def get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None

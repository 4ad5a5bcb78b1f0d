"""Template helpers of the portal: who is looking, and how numbers and digests read."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from typing import Any

from django import template
from django.http import HttpRequest
from django.urls import reverse

from audit.selectors import RecordedState
from consortium.portal.access import STAFF, Viewer, viewer_of
from consortium.portal.selectors import halt_recorded

register = template.Library()


@register.simple_tag(takes_context=True)
def portal_viewer(context: dict[str, Any]) -> Viewer | None:
    """The signed-in viewer, for pages (such as 403 and 404) whose view did not pass one."""
    request: HttpRequest | None = context.get("request")
    if request is None or not request.user.is_authenticated:
        return None
    return viewer_of(request)


@register.simple_tag(takes_context=True)
def consortium_halt(context: dict[str, Any]) -> RecordedState | None:
    """The halt the scheduler recorded, for the banner of an operator's or auditor's page."""
    viewer = portal_viewer(context)
    if viewer is None or viewer.role not in STAFF:
        return None
    request = context["request"]
    # The banner and the overview's panel ask on the same page: one query, not two.
    if not hasattr(request, "_consortium_halt"):
        request._consortium_halt = halt_recorded()
    halt: RecordedState | None = request._consortium_halt
    return halt


# Where an operator acts on each halt reason (``selectors_state.HaltCode``); none for those
# fixed outside the portal (a key epoch from the command line, a setting).
HALT_ACTIONS = {
    "no_policy": ("portal:policy-new", "create a policy"),
    "max_rounds": ("portal:policy-list", "publish a new policy version"),
    "consecutive_failures": ("portal:round-list", "see the failed rounds"),
    "privacy_budget": ("portal:policy-list", "agree a new policy version"),
    "ckks_mismatch": ("portal:policy-list", "publish a new policy version"),
    "disputed": ("portal:roster", "see the disputes and clearances"),
    "too_few_members": ("portal:bank-list", "reactivate or onboard members"),
    "policy_not_approved": ("portal:roster", "propose a roster change"),
    "key_epoch_not_in_force": ("portal:roster", "propose a roster change"),
    "no_roster": ("portal:roster", "found the consortium"),
    "roster_invalid": ("portal:roster", "check the roster"),
}


@register.simple_tag
def halt_action(code: str) -> dict[str, str] | None:
    """``{"url": ..., "label": ...}`` of the page to act on a halt reason, or None."""
    found = HALT_ACTIONS.get(code)
    if found is None:
        return None
    name, label = found
    url = reverse(name)
    if code == "consecutive_failures":
        url += "?state=failed"
    elif code == "too_few_members":
        url += "?status=suspended"
    return {"url": url, "label": label}


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
def without(mapping: Any, key: str) -> Any:
    """``mapping`` less ``key`` (a figure the page shows from a better source instead)."""
    return {k: v for k, v in mapping.items() if k != key} if isinstance(mapping, dict) else mapping


@register.filter
def get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, dict) else None

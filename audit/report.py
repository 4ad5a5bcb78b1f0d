"""The audit report as one dict: the JSON export itself, and what CSV and PDF render.

It carries every event in the chosen range with its hashes, the signed checkpoints that
cover them, and a summary of each round (participants, policy and privacy settings,
signed submission digests, manifests, rejections, failures), and the banks' signed
roster history with the objections nodes sent. The rounds, key epochs, banks and roster
are not audit's tables: the caller supplies them through a :class:`ReportSource`
(the portal's is ``consortium.audit_api.selectors.PortalReportSource``), so that this
app imports nothing from ``consortium``. The portal signs the whole dict;
``python -m audit.verify`` re-checks it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db.models import Max, Min
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit.chain import GENESIS, report_body_sha256, report_message
from audit.disputes import section_disputes
from audit.gates import section_gates
from audit.models import AuditEvent, Checkpoint
from audit.portal_key import portal_signing_key
from audit.selectors import audit_chain_verify
from he.signing import public_key_b64, sign

REPORT_FORMAT = "consortium-audit-report-v1"

Record = dict[str, Any]


class SelectionError(ValueError):
    """The requested rounds or period cannot be reported; the message says why."""


@dataclass(frozen=True)
class Selection:
    """What a report covers: some rounds, a period, or (neither) the whole trail."""

    rounds: tuple[int, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "rounds": list(self.rounds) if self.rounds is not None else None,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
        }


def _moment(raw: str, name: str, *, end: bool) -> datetime:
    """A date (whole day; ``until`` includes it) or an ISO datetime, naive meaning UTC."""
    raw = raw.strip()
    try:
        # A date first: parse_datetime would also take "2026-11-27", as its midnight.
        day = parse_date(raw)
        moment = None if day else parse_datetime(raw)
    except ValueError as exc:
        raise SelectionError(f"{name}={raw!r} is not a valid date or datetime: {exc}") from exc
    if moment is None and day is None:
        raise SelectionError(f"{name}={raw!r}: give a date (2026-11-27) or an ISO datetime")
    if moment is None:
        assert day is not None
        moment = datetime.combine(day + timedelta(days=1) if end else day, time.min)
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    return moment


def selection_read(
    *, rounds: str | None = None, since: str | None = None, until: str | None = None
) -> Selection:
    """Parse ``rounds=1,2`` or ``since``/``until``; raise SelectionError with a reason.

    Syntax only: whether the rounds exist is the caller's question (audit does not own
    the rounds table); ``consortium.audit_api.selectors.selection_parse`` asks it.
    """
    if rounds and (since or until):
        raise SelectionError("choose either rounds or a period (since/until), not both")
    if rounds:
        try:
            numbers = tuple(sorted({int(part) for part in rounds.split(",") if part.strip()}))
        except ValueError as exc:
            raise SelectionError(f"rounds={rounds!r}: give round numbers like 1,2,3") from exc
        return Selection(rounds=numbers)
    start = _moment(since, "since", end=False) if since else None
    stop = _moment(until, "until", end=True) if until else None
    if start and stop and start >= stop:
        raise SelectionError("since must come before until")
    return Selection(since=start, until=stop)


class ReportSource(Protocol):
    """The rows a report summarises that live outside the audit tables.

    ``rounds`` answers one summary dict per round number (oldest first); ``key_epochs``
    and ``banks`` answer the epochs and banks those rounds and ``events`` name;
    ``roster`` answers the roster section (versions in force, pending or withdrawn
    proposals, objections, dispute clearances, gate verdicts; the report adds ``disputes``
    and ``gates``; its shape
    is in docs/audit.md and ``audit.roster_verify`` checks it) up to ``until`` (None:
    up to now).
    """

    def rounds(self, numbers: list[int]) -> list[Record]: ...

    def key_epochs(self, rounds: list[Record], events: list[Record]) -> list[Record]: ...

    def banks(self, rounds: list[Record], events: list[Record]) -> list[Record]: ...

    def roster(self, selection: Selection, until: datetime | None) -> Record: ...


def _seq_range(selection: Selection, head_seq: int) -> tuple[int, int]:
    """The contiguous run of events the report carries (lo > hi when there are none).

    Contiguous, so the verifier can check every link inside it: a period's events are
    the ones from its first to its last, whatever their clocks say in between. Nothing
    after ``head_seq`` (the snapshot's head) is in it.
    """
    events = AuditEvent.objects.filter(seq__lte=head_seq)
    if selection.rounds is not None:
        events = events.filter(data__round__in=list(selection.rounds))
    else:
        if selection.since is not None:
            events = events.filter(created_at__gte=selection.since)
        if selection.until is not None:
            events = events.filter(created_at__lt=selection.until)
    bounds = events.aggregate(lo=Min("seq"), hi=Max("seq"))
    if bounds["lo"] is None:
        return 1, 0
    if selection.rounds is None and selection.until is None:
        return bounds["lo"], head_seq  # open-ended: through the snapshot's head
    return bounds["lo"], bounds["hi"]


def _round_numbers(events: Iterable[dict[str, Any]]) -> set[int]:
    numbers = set()
    for event in events:
        value = event["data"].get("round") if isinstance(event["data"], dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            numbers.add(value)
    return numbers


def report_build(
    *, selection: Selection, generated_by: str, head: Checkpoint, source: ReportSource
) -> dict[str, Any]:
    """Assemble and sign the report for ``selection``; ``head`` is the snapshot's checkpoint.

    The report carries no event after ``head.seq``. ``source`` supplies the rounds, key
    epochs, banks and roster the report summarises.
    """
    lo, hi = _seq_range(selection, head.seq)
    events = [e.as_record() for e in AuditEvent.objects.filter(seq__gte=lo, seq__lte=hi)]
    numbers = sorted(selection.rounds or _round_numbers(events))
    rounds = source.rounds(numbers)
    checkpoints = [c.as_record() for c in Checkpoint.objects.filter(seq__gte=lo, seq__lte=hi)]
    if head.as_record() not in checkpoints:
        checkpoints.append(head.as_record())
    roster = source.roster(selection, selection.until)
    if roster is not None:
        # Derived from the signatures in the report itself; audit.verify recomputes it.
        roster["disputes"] = section_disputes(roster, events)
        roster["gates"] = section_gates(roster, rounds, events)
    key = portal_signing_key()
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "consortium": getattr(settings, "CONSORTIUM_NAME", "Consortium"),
        "generated_at": head.signed_at.isoformat(),
        "generated_by": generated_by,
        "selection": selection.as_dict(),
        "period": {
            "from": events[0]["created_at"] if events else None,
            "to": events[-1]["created_at"] if events else None,
        },
        "chain": {
            "first_seq": events[0]["seq"] if events else None,
            "last_seq": events[-1]["seq"] if events else None,
            "first_prev_hash": events[0]["prev_hash"] if events else GENESIS,
            "events": len(events),
        },
        "verification": audit_chain_verify().as_dict(),
        "signed_head": head.as_record(),
        "portal_public_key": public_key_b64(key),
        "rounds": rounds,
        "key_epochs": source.key_epochs(rounds, events),
        "banks": source.banks(rounds, events),
        "roster": roster,
        "checkpoints": checkpoints,
        "events": events,
    }
    digest = report_body_sha256(report)
    report["signature"] = {
        "algorithm": "Ed25519",
        "public_key": public_key_b64(key),
        "body_sha256": digest,
        "value": sign(key, report_message(digest)),
    }
    return report

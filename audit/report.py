"""The audit report as one dict: the JSON export itself, and what CSV and PDF render.

It carries every event in the chosen range with its hashes, the signed checkpoints that
cover them, and a summary of each round built from the rounds tables (participants,
policy and privacy settings, signed submission digests, manifests, rejections,
failures). The portal signs the whole dict; ``python -m audit.verify`` re-checks it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Max, Min, Q
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from audit.chain import GENESIS, report_body_sha256, report_message
from audit.models import AuditEvent, Checkpoint
from audit.portal_key import portal_signing_key
from audit.selectors import audit_chain_verify, audit_head
from he.signing import public_key_b64, sign, update_message, verify

REPORT_FORMAT = "consortium-audit-report-v1"
# Policy fields that say how much the aggregate can reveal, besides min_banks and CKKS.
_PRIVACY_FIELD = re.compile(r"(^dp_|epsilon|delta|noise|clip|privacy)")


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


def selection_parse(
    *, rounds: str | None = None, since: str | None = None, until: str | None = None
) -> Selection:
    """Parse ``rounds=1,2`` or ``since``/``until``; raise SelectionError with a reason."""
    from consortium.rounds.models import Round

    if rounds and (since or until):
        raise SelectionError("choose either rounds or a period (since/until), not both")
    if rounds:
        try:
            numbers = tuple(sorted({int(part) for part in rounds.split(",") if part.strip()}))
        except ValueError as exc:
            raise SelectionError(f"rounds={rounds!r}: give round numbers like 1,2,3") from exc
        found = set(Round.objects.filter(number__in=numbers).values_list("number", flat=True))
        missing = [n for n in numbers if n not in found]
        if missing:
            raise SelectionError(f"no such round: {', '.join(map(str, missing))}")
        return Selection(rounds=numbers)
    start = _moment(since, "since", end=False) if since else None
    stop = _moment(until, "until", end=True) if until else None
    if start and stop and start >= stop:
        raise SelectionError("since must come before until")
    return Selection(since=start, until=stop)


def _seq_range(selection: Selection, head_seq: int) -> tuple[int, int]:
    """The contiguous run of events the report carries (lo > hi when there are none).

    Contiguous, so the verifier can check every link inside it: a period's events are
    the ones from its first to its last, whatever their clocks say in between.
    """
    events = AuditEvent.objects.all()
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
        return bounds["lo"], head_seq  # open-ended: through the export event itself
    return bounds["lo"], bounds["hi"]


def _round_numbers(events: Iterable[dict[str, Any]]) -> set[int]:
    numbers = set()
    for event in events:
        value = event["data"].get("round") if isinstance(event["data"], dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            numbers.add(value)
    return numbers


def _privacy(snapshot: dict[str, Any], subs: list[Any]) -> dict[str, Any]:
    """The settings that bound what the aggregate reveals, and the epsilon banks spent.

    DP is on when the policy sets a target epsilon or a noise multiplier (the rule the
    rounds app enforces); each bank reports its cumulative epsilon with its upload.
    """
    enabled = (
        snapshot.get("dp_target_epsilon") is not None
        or snapshot.get("dp_noise_multiplier") is not None
    )
    return {
        "min_banks": snapshot.get("min_banks"),
        "ckks_params": snapshot.get("ckks_params"),
        "differential_privacy": "on" if enabled else "off",
        "dp_settings": {k: v for k, v in sorted(snapshot.items()) if _PRIVACY_FIELD.search(k)},
        "epsilon_spent": {
            s.bank.slug: s.epsilon_spent
            for s in subs
            if getattr(s, "epsilon_spent", None) is not None
        },
    }


def _accepted_in_trail(numbers: list[int]) -> set[tuple[int, str, str, str]]:
    """(round, bank, digest, signature) of every update.accepted event of these rounds."""
    found = set()
    for data in AuditEvent.objects.filter(
        action="update.accepted", data__round__in=numbers
    ).values_list("data", flat=True):
        found.add((data.get("round"), data.get("bank"), data.get("digest"), data.get("signature")))
    return found


def _rejections(numbers: list[int]) -> dict[int, list[dict[str, Any]]]:
    by_round: dict[int, list[dict[str, Any]]] = {n: [] for n in numbers}
    rows = AuditEvent.objects.filter(action="update.rejected", data__round__in=numbers)
    for event in rows.order_by("seq"):
        by_round[event.data["round"]].append(
            {
                "seq": event.seq,
                "at": event.created_at.isoformat(),
                "bank": event.actor.removeprefix("bank:"),
                "reason": event.data.get("reason", ""),
            }
        )
    return by_round


def _submission(sub: Any, number: int, manifest: set[str], trail: set[Any]) -> dict[str, Any]:
    message = update_message(number, sub.bank.slug, sub.digest)
    return {
        "bank": sub.bank.slug,
        "digest": sub.digest,
        "size_bytes": sub.size_bytes,
        "received_at": sub.received_at.isoformat(),
        "signature": sub.signature,
        "signing_public_key": sub.signing_public_key,
        "signature_valid": verify(sub.signing_public_key, message, sub.signature),
        "in_manifest": sub.digest in manifest,
        "recorded_in_trail": (number, sub.bank.slug, sub.digest, sub.signature) in trail,
        "epsilon_spent": getattr(sub, "epsilon_spent", None),
        "budget_left": getattr(sub, "budget_left", None),
    }


def _rounds(numbers: list[int]) -> list[dict[str, Any]]:
    from consortium.rounds.models import MetricReport, Round

    rounds = list(
        Round.objects.filter(number__in=numbers)
        .select_related("policy", "key_epoch", "base_round")
        .prefetch_related("submissions__bank")
        .order_by("number")
    )
    trail = _accepted_in_trail(numbers)
    rejections = _rejections(numbers)
    metrics: dict[int, list[dict[str, Any]]] = {n: [] for n in numbers}
    for report in MetricReport.objects.filter(round__in=rounds).select_related("round", "bank"):
        metrics[report.round.number].append(
            {"bank": report.bank.slug, "metrics": report.metrics, "self_reported": True}
        )
    out = []
    for rnd in rounds:
        manifest = {i.get("digest") for i in (rnd.manifest or {}).get("inputs", [])}
        subs = sorted(rnd.submissions.all(), key=lambda s: s.bank.slug)
        round_metrics = sorted(metrics[rnd.number], key=lambda m: m["bank"])
        out.append(
            {
                "number": rnd.number,
                "kind": getattr(rnd, "kind", "training"),
                "state": rnd.state,
                "opened_at": rnd.opened_at.isoformat(),
                "deadline_at": rnd.deadline_at.isoformat(),
                "closed_at": rnd.closed_at.isoformat() if rnd.closed_at else None,
                "policy": {"name": rnd.policy.name, "version": rnd.policy.version},
                "policy_snapshot": rnd.policy_snapshot,
                "privacy": _privacy(rnd.policy_snapshot, subs),
                "key_epoch": {
                    "number": rnd.key_epoch.number,
                    "fingerprint": rnd.key_epoch.fingerprint,
                },
                "base_round": rnd.base_round.number if rnd.base_round else None,
                "participants": [s.bank.slug for s in subs],
                "submissions": [_submission(s, rnd.number, manifest, trail) for s in subs],
                "aggregate_digest": rnd.aggregate_digest or None,
                "manifest": rnd.manifest or None,
                "rejections": rejections[rnd.number],
                "failure_reason": rnd.failure_reason or None,
                "metrics": round_metrics,
            }
        )
    return out


def _key_epochs(rounds: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from consortium.rounds.models import KeyEpoch

    numbers = {r["key_epoch"]["number"] for r in rounds}
    registered = {e["object_id"] for e in events if e["action"] == "key_epoch.registered"}
    epochs = KeyEpoch.objects.filter(Q(number__in=numbers) | Q(pk__in=registered))
    return [
        {
            "number": e.number,
            "fingerprint": e.fingerprint,
            "ckks_params": e.ckks_params,
            "active": e.active,
            "created_at": e.created_at.isoformat(),
            "created_by": e.created_by,
        }
        for e in epochs.order_by("number")
    ]


def _banks(rounds: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from consortium.members.models import Bank

    slugs = {s for r in rounds for s in r["participants"]}
    slugs |= {j["bank"] for r in rounds for j in r["rejections"]}
    pks = {e["object_id"] for e in events if e["object_type"] == "members.bank"}
    banks = Bank.objects.filter(Q(slug__in=slugs) | Q(pk__in=pks)).order_by("slug")
    return [
        {
            "slug": b.slug,
            "name": b.name,
            "status": b.status,
            "signing_public_key": b.signing_public_key,
        }
        for b in banks
    ]


def report_build(*, selection: Selection, generated_by: str, head: Checkpoint) -> dict[str, Any]:
    """Assemble and sign the report for ``selection``; ``head`` is the export's checkpoint."""
    lo, hi = _seq_range(selection, audit_head().seq)
    events = [e.as_record() for e in AuditEvent.objects.filter(seq__gte=lo, seq__lte=hi)]
    numbers = sorted(selection.rounds or _round_numbers(events))
    rounds = _rounds(numbers)
    checkpoints = [c.as_record() for c in Checkpoint.objects.filter(seq__gte=lo, seq__lte=hi)]
    if head.as_record() not in checkpoints:
        checkpoints.append(head.as_record())
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
        "key_epochs": _key_epochs(rounds, events),
        "banks": _banks(rounds, events),
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

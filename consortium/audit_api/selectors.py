"""What an audit report summarises from the portal's tables: rounds, key epochs, banks, roster.

The audit app renders and signs a report but owns only the audit tables; this module
reads the rest (``PortalReportSource``) and checks that requested rounds exist.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.db.models import Q

from audit.report import Selection, SelectionError, selection_read
from audit.selectors import audit_accepted_updates, audit_rejections
from consortium.governance.models import (
    DisputeClearance,
    Objection,
    RosterVersion,
    VersionStatus,
)
from consortium.governance.selectors import signed_version
from consortium.members.models import Bank
from consortium.rounds.models import GateVerdict, KeyEpoch, MetricReport, Round, RoundKind
from consortium.rounds.selectors_epsilon import epsilon_signed_by_round
from he.signing import update_signature_valid, update_signed_digest
from protocol import dp_enabled

# Policy fields that say how much the aggregate can reveal, besides min_banks and CKKS.
_PRIVACY_FIELD = re.compile(r"(^dp_|epsilon|delta|noise|clip|privacy)")


def selection_parse(
    *, rounds: str | None = None, since: str | None = None, until: str | None = None
) -> Selection:
    """Parse ``rounds=1,2`` or ``since``/``until``; raise SelectionError with a reason."""
    selection = selection_read(rounds=rounds, since=since, until=until)
    if selection.rounds is None:
        return selection
    numbers = selection.rounds
    found = set(Round.objects.filter(number__in=numbers).values_list("number", flat=True))
    missing = [n for n in numbers if n not in found]
    if missing:
        raise SelectionError(f"no such round: {', '.join(map(str, missing))}")
    return selection


def _privacy(rnd: Round, signed: dict[str, float]) -> dict[str, Any]:
    """The settings that bound what the aggregate reveals, and the ε banks signed.

    DP is on when the policy sets a target epsilon or a noise multiplier
    (``protocol.dp_enabled``, the rule the rounds app enforces), and only in a training
    round: DP-SGD noises the training, and the statistics and evaluation rounds release
    exact sums (``release`` says what). ``epsilon_spent`` is the cumulative figure each
    bank signed with its upload (``selectors_epsilon``), the one the budget check used.
    """
    snapshot = rnd.policy_snapshot
    training = getattr(rnd, "kind", RoundKind.TRAINING) == RoundKind.TRAINING
    enabled = training and dp_enabled(
        snapshot.get("dp_target_epsilon"), snapshot.get("dp_noise_multiplier")
    )
    return {
        "min_banks": snapshot.get("min_banks"),
        "ckks_params": snapshot.get("ckks_params"),
        "differential_privacy": "on" if enabled else "off",
        "dp_settings": (
            {k: v for k, v in sorted(snapshot.items()) if _PRIVACY_FIELD.search(k)}
            if training
            else {}
        ),
        "epsilon_spent": signed,
        "epsilon_budget": snapshot.get("dp_target_epsilon") if enabled else None,
        "release": _release(getattr(rnd, "kind", RoundKind.TRAINING), enabled, snapshot),
    }


def _release(kind: str, enabled: bool, snapshot: dict[str, Any]) -> str:
    """What the round's aggregate reveals to the members, in words (docs/threat-model.md)."""
    floor = f"summed over at least {snapshot.get('min_banks')} banks, encrypted: only members"
    if kind == RoundKind.STATISTICS:
        return (
            f"exact sums of feature moments (sum of x and of x squared per feature) and row "
            f"counts, {floor} decrypt them; no noise is added (differential privacy covers "
            "training rounds only)"
        )
    if kind == RoundKind.SKETCH:
        return (
            f"sums of the banks' counterparty sketches (count-min, keyed hash), each noised "
            f"by its bank with the Gaussian mechanism before encryption, {floor} decrypt them"
        )
    if kind == RoundKind.EVALUATION:
        return (
            f"exact sums of the banks' score histograms on their validation data, {floor} "
            "decrypt them; no noise is added"
        )
    noise = "noised by DP-SGD at each bank" if enabled else "without differential privacy"
    return f"model weights trained {noise}, {floor} decrypt them"


def _submission(sub: Any, number: int, manifest: set[str], trail: set[Any]) -> dict[str, Any]:
    valid = update_signature_valid(
        sub.signing_public_key,
        number,
        sub.bank.slug,
        sub.digest,
        sub.signature,
        epsilon=getattr(sub, "epsilon_spent", None),
        budget_left=getattr(sub, "budget_left", None),
    ) or update_signed_digest(  # uploads accepted before the v2 message
        sub.signing_public_key, number, sub.bank.slug, sub.digest, sub.signature
    )
    return {
        "bank": sub.bank.slug,
        "digest": sub.digest,
        "size_bytes": sub.size_bytes,
        "received_at": sub.received_at.isoformat(),
        "signature": sub.signature,
        "signing_public_key": sub.signing_public_key,
        "signature_valid": valid,
        "in_manifest": sub.digest in manifest,
        "recorded_in_trail": (number, sub.bank.slug, sub.digest, sub.signature) in trail,
        "epsilon_spent": getattr(sub, "epsilon_spent", None),
        "budget_left": getattr(sub, "budget_left", None),
    }


def report_rounds(numbers: list[int]) -> list[dict[str, Any]]:
    """One summary per round: policy, privacy, submissions re-verified, metrics."""
    rounds = list(
        Round.objects.filter(number__in=numbers)
        .select_related("policy", "key_epoch", "base_round", "candidate_round")
        .prefetch_related("submissions__bank")
        .order_by("number")
    )
    trail = audit_accepted_updates(rounds=numbers)
    signed = epsilon_signed_by_round(numbers)
    rejections = audit_rejections(rounds=numbers)
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
                "privacy": _privacy(rnd, signed.get(rnd.number, {})),
                "key_epoch": {
                    "number": rnd.key_epoch.number,
                    "fingerprint": rnd.key_epoch.fingerprint,
                },
                "base_round": rnd.base_round.number if rnd.base_round else None,
                "candidate_round": rnd.candidate_round.number if rnd.candidate_round else None,
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


def report_key_epochs(
    rounds: list[dict[str, Any]], events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The key epochs the rounds used or the events registered."""
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


def report_banks(
    rounds: list[dict[str, Any]], events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The banks that took part in or were refused by the rounds, or the events name."""
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


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _status_at(row: RosterVersion, until: datetime | None) -> str:
    """The version's status at the report's end: one in force only later was pending then."""
    if row.status == VersionStatus.IN_FORCE and until is not None:
        assert row.in_force_at is not None  # set with the status, in the same save
        return row.status if row.in_force_at < until else VersionStatus.PENDING
    return str(row.status)


def _roster_version(row: RosterVersion, status: str) -> dict[str, Any]:
    """A stored version, and the signed version exactly as the banks' nodes verify it."""
    return {
        "number": row.number,
        "kind": row.kind,
        "summary": row.summary,
        "status": str(status),
        "version_hash": row.version_hash,
        "previous_hash": row.previous_hash,
        "proposed_by": row.proposed_by,
        "proposed_at": row.proposed_at.isoformat(),
        "in_force_at": _iso(row.in_force_at) if status == VersionStatus.IN_FORCE else None,
        "version": signed_version(row).to_dict(),
    }


def _in_force_at(versions: list[RosterVersion], moment: datetime) -> int | None:
    """The number of the last version in force at ``moment`` (None before the genesis)."""
    numbers = [v.number for v in versions if v.in_force_at and v.in_force_at <= moment]
    return max(numbers) if numbers else None


def _objection(row: Objection, versions: list[RosterVersion]) -> dict[str, Any]:
    return {
        "bank": row.bank.slug,
        "round": row.round_number,
        "reason_code": row.reason_code,
        "message": row.message,
        "received_at": row.received_at.isoformat(),
        # The portal checked the signature under this version's key when it stored it.
        "roster_version": _in_force_at(versions, row.received_at),
        "body": row.body,
        "signature": row.signature,
    }


def report_roster(selection: Selection, until: datetime | None) -> dict[str, Any]:
    """The roster history up to ``until``: every version in force from the genesis on (the
    chain is only checkable whole), the pending and withdrawn proposals, and the
    objections in the selection (its rounds, or its period)."""
    rows = RosterVersion.objects.prefetch_related("signatures").order_by("number", "proposed_at")
    objections = Objection.objects.select_related("bank").order_by("received_at", "pk")
    if until is not None:
        rows = rows.filter(proposed_at__lt=until)
        objections = objections.filter(received_at__lt=until)
    if selection.rounds is not None:
        objections = objections.filter(round_number__in=selection.rounds)
    elif selection.since is not None:
        objections = objections.filter(received_at__gte=selection.since)
    listed = [(r, _status_at(r, until)) for r in rows]
    in_force = [r for r, status in listed if status == VersionStatus.IN_FORCE]
    chosen = list(objections)
    return {
        "consortium_id": in_force[0].body.get("consortium_id") if in_force else None,
        "versions": [_roster_version(r, VersionStatus.IN_FORCE) for r in in_force],
        "proposals": [_roster_version(r, s) for r, s in listed if s != VersionStatus.IN_FORCE],
        "objections": [_objection(o, in_force) for o in chosen],
        "clearances": _clearances({o.round_number for o in chosen if o.round_number}, until),
        "verdicts": _verdicts(selection, until),
    }


def _verdicts(selection: Selection, until: datetime | None) -> list[dict[str, Any]]:
    """The banks' signed gate verdicts in the selection (its rounds, or its period)."""
    rows = GateVerdict.objects.select_related("round", "bank")
    if until is not None:
        rows = rows.filter(received_at__lt=until)
    if selection.rounds is not None:
        rows = rows.filter(round__number__in=selection.rounds)
    elif selection.since is not None:
        rows = rows.filter(received_at__gte=selection.since)
    return [
        {
            "round": v.round.number,
            "bank": v.bank.slug,
            "verdict": v.verdict,
            "signature": v.signature,
            "received_at": v.received_at.isoformat(),
        }
        for v in rows.order_by("round__number", "bank__slug")
    ]


def _clearances(rounds: set[int], until: datetime | None) -> list[dict[str, Any]]:
    """The banks' signed clearances of these rounds' disputes (received before ``until``)."""
    rows = DisputeClearance.objects.filter(round_number__in=rounds)
    if until is not None:
        rows = rows.filter(received_at__lt=until)
    return [
        {
            "round": c.round_number,
            "bank": c.bank_id,
            "signature": c.signature,
            "received_at": c.received_at.isoformat(),
        }
        for c in rows.order_by("round_number", "bank_id")
    ]


class PortalReportSource:
    """The portal's rounds, key epochs, banks and roster, as ``audit.report.ReportSource``."""

    def rounds(self, numbers: list[int]) -> list[dict[str, Any]]:
        return report_rounds(numbers)

    def key_epochs(
        self, rounds: list[dict[str, Any]], events: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return report_key_epochs(rounds, events)

    def banks(
        self, rounds: list[dict[str, Any]], events: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return report_banks(rounds, events)

    def roster(self, selection: Selection, until: datetime | None) -> dict[str, Any]:
        return report_roster(selection, until)

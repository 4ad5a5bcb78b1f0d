"""Reads of the audit trail, and the check of the whole chain in the database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.db.models import Max, Q, QuerySet

from audit.chain import BODY_FIELDS, GENESIS, ChainResult, checkpoint_problem, verify_events
from audit.models import AuditEvent, AuditHead, Checkpoint
from audit.portal_key import portal_public_key


@dataclass(frozen=True)
class ChainCheck:
    """The verdict on the trail: ``first_bad_seq`` names the first event that fails."""

    ok: bool
    events: int
    first_bad_seq: int | None
    reason: str
    problem: str = ""
    head_seq: int = 0
    head_hash: str = GENESIS
    checkpoints: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _event_rows() -> Iterator[dict[str, Any]]:
    rows = AuditEvent.objects.order_by("seq").values(*BODY_FIELDS, "prev_hash", "hash")
    for row in rows.iterator(chunk_size=2000):
        row["created_at"] = row["created_at"].isoformat()
        yield row


def _head_problem(walk: ChainResult, head: AuditHead) -> tuple[int, str, str] | None:
    """Compare the end of the walk with the head row that every append updates."""
    last = walk.last_seq or 0
    if last > head.seq:
        return head.seq + 1, "inserted", f"event #{head.seq + 1} lies past the head: inserted"
    if last < head.seq:
        gap = f"#{last + 1}" if head.seq == last + 1 else f"#{last + 1} to #{head.seq}"
        return last + 1, "deleted", f"event {gap} is missing: deleted"
    if walk.last_hash != head.hash:
        return last, "modified", f"event #{last} is not the one the head recorded: replaced"
    return None


def audit_chain_verify() -> ChainCheck:
    """Walk the chain in order; name the first event modified, deleted or inserted.

    Then compare the last event with the head row, and every checkpoint with the
    portal's key and the event it signed.
    """
    walk = verify_events(_event_rows())
    head = AuditHead.objects.filter(id=1).first() or AuditHead(seq=0, hash=GENESIS)

    def verdict(
        ok: bool, at: int | None, problem: str, reason: str, checked: int = 0
    ) -> ChainCheck:
        return ChainCheck(ok, walk.events, at, reason, problem, head.seq, head.hash, checked)

    if not walk.ok:
        return verdict(False, walk.first_bad_seq, walk.problem, walk.reason)
    at_head = _head_problem(walk, head)
    if at_head is not None:
        return verdict(False, *at_head)
    checkpoints = list(Checkpoint.objects.order_by("seq", "id"))
    hashes = dict(
        AuditEvent.objects.filter(seq__in={c.seq for c in checkpoints}).values_list("seq", "hash")
    )
    hashes[0] = GENESIS
    trusted = {portal_public_key()} if checkpoints else set()
    for checkpoint in checkpoints:
        problem = checkpoint_problem(
            checkpoint.as_record(), trusted_keys=trusted, hash_at_seq=hashes.get(checkpoint.seq)
        )
        if problem is None and checkpoint.seq not in hashes:
            problem = f"names event #{checkpoint.seq}, which is missing: deleted"
        if problem is not None:
            signed = f"{checkpoint.signed_at:%Y-%m-%d %H:%M}"
            reason = f"checkpoint of #{checkpoint.seq} signed {signed} {problem}"
            return verdict(False, checkpoint.seq, "checkpoint", reason)
    return verdict(True, None, "", "chain intact", len(checkpoints))


def audit_event_list(
    *,
    action: str | None = None,
    actor: str | None = None,
    actor_contains: str | None = None,
    object_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    round_number: int | None = None,
    newest_first: bool = False,
) -> QuerySet[AuditEvent]:
    """Events narrowed by whichever filters are given, oldest first unless asked otherwise.

    ``actor`` matches exactly (the API's filter); ``actor_contains`` is the web portal's
    search box ("bank:" finds every bank's events).
    """
    events = AuditEvent.objects.order_by("-seq" if newest_first else "seq")
    if action:
        events = events.filter(action=action)
    if actor:
        events = events.filter(actor=actor)
    if actor_contains:
        events = events.filter(actor__icontains=actor_contains)
    if object_type:
        events = events.filter(object_type=object_type)
    if since is not None:
        events = events.filter(created_at__gte=since)
    if until is not None:
        events = events.filter(created_at__lt=until)
    if round_number is not None:
        # Every event about a round (opened, uploads, rejections, close, metrics) names it.
        events = events.filter(data__round=round_number)
    return events


def audit_events_about(
    *, object_type: str, object_id: str, actor: str | None = None, limit: int = 10
) -> list[AuditEvent]:
    """The newest events about one object, or (with ``actor``) made by that actor."""
    about = Q(object_type=object_type, object_id=object_id)
    if actor:
        about |= Q(actor=actor)
    return list(AuditEvent.objects.filter(about).order_by("-seq")[:limit])


def audit_last_time(*, action: str, object_type: str, object_id: str) -> datetime | None:
    """When ``action`` last happened to the object, or None."""
    return (
        AuditEvent.objects.filter(action=action, object_type=object_type, object_id=object_id)
        .order_by("-seq")
        .values_list("created_at", flat=True)
        .first()
    )


def audit_action_names() -> list[str]:
    return list(AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct())


def audit_object_types() -> list[str]:
    return list(
        AuditEvent.objects.exclude(object_type="")
        .order_by("object_type")
        .values_list("object_type", flat=True)
        .distinct()
    )


def audit_chain_length() -> int:
    """Events in the chain: the sequence number of its newest event."""
    return int(AuditEvent.objects.aggregate(n=Max("seq"))["n"] or 0)


def audit_checkpoint_list() -> QuerySet[Checkpoint]:
    return Checkpoint.objects.order_by("seq", "id")


def audit_head() -> AuditHead:
    return AuditHead.objects.filter(id=1).first() or AuditHead(seq=0, hash=GENESIS)


def audit_accepted_updates(*, rounds: list[int]) -> set[tuple[int, str, str, str]]:
    """(round, bank, digest, signature) of every update.accepted event of these rounds."""
    found = set()
    for data in AuditEvent.objects.filter(
        action="update.accepted", data__round__in=rounds
    ).values_list("data", flat=True):
        found.add((data.get("round"), data.get("bank"), data.get("digest"), data.get("signature")))
    return found


def audit_rejections(*, rounds: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The update.rejected events of these rounds, by round number, oldest first."""
    by_round: dict[int, list[dict[str, Any]]] = {n: [] for n in rounds}
    rows = AuditEvent.objects.filter(action="update.rejected", data__round__in=rounds)
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


def audit_round_event_recorded(*, action: str, round_number: int) -> bool:
    """True once an ``action`` event about round ``round_number`` is in the trail."""
    return AuditEvent.objects.filter(action=action, data__round=round_number).exists()


def audit_objections_recorded(*, rounds: list[int]) -> list[dict[str, Any]]:
    """What each ``objection.recorded`` event of these rounds holds: the signed objection
    fields and its ``signature``, oldest first.

    The trail keeps every objection the portal accepted, hash-chained: an objection row
    deleted from the portal's table is still here, and deleting it here breaks the chain.
    """
    rows = AuditEvent.objects.filter(action="objection.recorded", data__round_number__in=rounds)
    return [dict(data) for data in rows.order_by("seq").values_list("data", flat=True)]


# The events that say the scheduler found the consortium halted, or running again.
CONSORTIUM_STATE_ACTIONS = ("consortium.halted", "consortium.resumed")


@dataclass(frozen=True)
class RecordedState:
    """The newest ``consortium.halted`` or ``consortium.resumed`` event, as the banner reads it."""

    action: str
    data: dict[str, Any]
    created_at: datetime
    seq: int

    @property
    def halted(self) -> bool:
        return self.action == "consortium.halted"


def audit_consortium_state_last() -> RecordedState | None:
    """What the trail last said about the consortium halting or resuming (one query)."""
    row = (
        AuditEvent.objects.filter(action__in=CONSORTIUM_STATE_ACTIONS)
        .order_by("-seq")
        .values_list("action", "data", "created_at", "seq")
        .first()
    )
    return RecordedState(*row) if row is not None else None

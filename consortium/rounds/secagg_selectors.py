"""Reads for secure aggregation v2: the advertised keys, the unmask request, who acted when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from consortium.members.models import Bank
from consortium.rounds.models import MaskKey, Round, RoundState, ShareReveal, Submission
from protocol import AdvertisedKey, CohortKeys, UnmaskRequest

# The states in which each phase is the one in progress, and those after it.
_PHASE_ORDER = (RoundState.SHARING, RoundState.OPEN, RoundState.UNMASKING, RoundState.AGGREGATING)


def round_is_masked(rnd: Round) -> bool:
    """True for a round run under secure aggregation v2 (fixed when it opened)."""
    return rnd.masked


def mask_key_get(rnd: Round, bank: Bank) -> MaskKey | None:
    return MaskKey.objects.select_related("round", "bank").filter(round=rnd, bank=bank).first()


def reveal_get(rnd: Round, bank: Bank) -> ShareReveal | None:
    return ShareReveal.objects.select_related("round", "bank").filter(round=rnd, bank=bank).first()


def mask_key_list(rnd: Round) -> QuerySet[MaskKey]:
    """The round's advertised mask keys, by bank slug."""
    return MaskKey.objects.filter(round=rnd).select_related("bank").order_by("bank__slug")


def mask_key_posters(rnd: Round) -> list[str]:
    """Slugs of the banks that advertised a mask key for the round (``U1`` once final)."""
    return list(mask_key_list(rnd).values_list("bank__slug", flat=True))


def reveal_senders(rnd: Round) -> list[str]:
    return list(
        ShareReveal.objects.filter(round=rnd)
        .order_by("bank__slug")
        .values_list("bank__slug", flat=True)
    )


def submission_of(rnd: Round, bank_slug: str) -> Submission | None:
    return Submission.objects.filter(round=rnd, bank__slug=bank_slug).select_related("bank").first()


def cohort_keys_for(rnd: Round, bank: Bank) -> CohortKeys:
    """The keys advertised so far, and the box each poster sealed to ``bank``.

    ``final`` once the sharing phase has closed: the keys are then ``U1``.
    """
    rows = list(mask_key_list(rnd))
    return CohortKeys(
        round=rnd.number,
        threshold=rnd.threshold or 0,
        cohort=tuple(sorted(rnd.cohort)),
        keys=tuple(
            AdvertisedKey(r.bank.slug, r.mask_public_key, r.seed_commitment, r.signature)
            for r in rows
        ),
        shares_for_you={r.bank.slug: r.shares[bank.slug] for r in rows if bank.slug in r.shares},
        final=rnd.state != RoundState.SHARING,
    )


def unmask_request_for(rnd: Round) -> UnmaskRequest:
    """Who survived (uploaded in time) and who dropped, as fixed when uploads closed."""
    return UnmaskRequest(
        round=rnd.number,
        threshold=rnd.threshold or 0,
        survivors=tuple(sorted(rnd.survivors)),
        dropped=tuple(sorted(rnd.dropped)),
    )


@dataclass(frozen=True)
class PhaseProgress:
    """One phase of a v2 round: who has acted, who is still awaited, and until when."""

    name: str
    label: str
    status: str  # "done", "current", "to come" or (a failed round) "not reached"
    deadline: datetime | None
    acted: list[str]
    awaited: list[str]


def secagg_progress(rnd: Round) -> list[PhaseProgress]:
    """The sharing, upload and unmasking phases of a v2 round, in order."""
    posters = mask_key_posters(rnd)
    u1 = posters if rnd.state != RoundState.SHARING else []
    uploaders = sorted(Submission.objects.filter(round=rnd).values_list("bank__slug", flat=True))
    revealers = reveal_senders(rnd)
    phases = [
        ("sharing", "Sharing mask keys", rnd.cohort, posters, rnd.phase_deadline_at),
        ("open", "Masked uploads", u1, uploaders, rnd.deadline_at),
        ("unmasking", "Unmasking", rnd.survivors, revealers, rnd.phase_deadline_at),
    ]
    return [
        _phase(rnd, name, label, expected, acted, deadline)
        for name, label, expected, acted, deadline in phases
    ]


def _phase(
    rnd: Round,
    name: str,
    label: str,
    expected: list[str],
    acted: list[str],
    deadline: datetime | None,
) -> PhaseProgress:
    status = _phase_status(rnd, RoundState(name))
    awaited = sorted(set(expected) - set(acted)) if status == "current" else []
    # phase_deadline_at is the end of the *current* phase only; an earlier one's is gone.
    shown = deadline if status == "current" or name == "open" else None
    return PhaseProgress(name, label, status, shown, sorted(acted), awaited)


def _phase_status(rnd: Round, phase: RoundState) -> str:
    if rnd.state == phase:
        return "current"
    state = RoundState(rnd.state)
    if state in _PHASE_ORDER and _PHASE_ORDER.index(state) < _PHASE_ORDER.index(phase):
        return "to come"
    if state == RoundState.FAILED and not _phase_reached(rnd, phase):
        return "not reached"
    return "done"


def _phase_reached(rnd: Round, phase: RoundState) -> bool:
    """Whether a failed round got as far as ``phase`` (it stops where its data does)."""
    if phase == RoundState.UNMASKING:
        return bool(rnd.survivors)
    if phase == RoundState.OPEN:
        return bool(rnd.survivors) or Submission.objects.filter(round=rnd).exists()
    return True

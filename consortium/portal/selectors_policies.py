"""Reads for the policy pages: the rounds a version ran, from which round it applies, the key
epochs whose CKKS parameters a version may take, the versions to compare."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Max, QuerySet

from consortium.governance import selectors as roster
from consortium.rounds.models import IN_FLIGHT_STATES, KeyEpoch, Round, RoundPolicy


@dataclass(frozen=True)
class Effective:
    """From which round a version applies: ``first`` (a round it ran) or, for the active
    version no round has used yet, ``next_round`` (the next one the scheduler opens)."""

    first: int | None
    next_round: int | None


def next_round_number() -> int:
    """The number the scheduler gives the next round it opens (numbers never repeat)."""
    return (Round.objects.aggregate(n=Max("number"))["n"] or 0) + 1


def policy_effective(policy: RoundPolicy) -> Effective:
    first = policy.rounds.order_by("number").values_list("number", flat=True).first()
    if first is not None:
        return Effective(first, None)
    return Effective(None, next_round_number() if policy.active else None)


def policy_rounds(policy: RoundPolicy) -> QuerySet[Round]:
    """Every round that ran under ``policy``, newest first (a page of them is shown)."""
    return (
        Round.objects.filter(policy=policy)
        .only("number", "kind", "state", "opened_at", "policy_id")
        .order_by("-number")
    )


def key_epochs_for_policies() -> list[KeyEpoch]:
    """The registered key epochs, newest first, without their (large) public contexts."""
    return list(KeyEpoch.objects.defer("public_context").order_by("-number"))


def policy_choices() -> list[RoundPolicy]:
    """Every version, by name and version, for the comparison's pickers."""
    return list(RoundPolicy.objects.order_by("name", "version"))


def policy_previous(policy: RoundPolicy) -> RoundPolicy | None:
    """The version of the same name just before ``policy``."""
    return (
        RoundPolicy.objects.filter(name=policy.name, version__lt=policy.version)
        .order_by("-version")
        .first()
    )


@dataclass(frozen=True)
class WhenItApplies:
    """What saving a new version does to the rounds: applies from ``next_round`` at once, or
    waits for activation (and, under a roster, the banks' approval of its digest)."""

    at_once: bool
    next_round: int
    in_flight: Round | None
    roster: bool


def new_version_applies(base: RoundPolicy | None, *, activate: bool) -> WhenItApplies:
    """As ``services.policy_new_version`` decides: a new version of the active policy is
    active at once unless a roster is in force (its digest needs the banks' approval first)."""
    under_roster = roster.roster_state() is not None
    at_once = (base is not None and base.active and not under_roster) or activate
    in_flight = Round.objects.select_related("policy").filter(state__in=IN_FLIGHT_STATES).first()
    return WhenItApplies(at_once, next_round_number(), in_flight, under_roster)


def policy_round_kinds(policy: RoundPolicy) -> list[tuple[str, int]]:
    """Rounds a version ran, in words by kind and state (``("published training", 2)``),
    for the sentence that says what ``max_rounds`` counts."""
    rows = policy.rounds.values("kind", "state").annotate(n=Count("pk")).order_by("kind", "state")
    return [(f"{r['state']} {r['kind']}", r["n"]) for r in rows]


def policy_active() -> RoundPolicy | None:
    """The version the scheduler follows (what a new policy would replace)."""
    return RoundPolicy.objects.filter(active=True).order_by("-created_at").first()

"""Reads for rounds: what a bank or operator may see."""

from __future__ import annotations

from django.db.models import QuerySet

from consortium.rounds.models import KeyEpoch, Round, RoundState


def round_list() -> QuerySet[Round]:
    # Nodes poll these rows many times a second: leave the public contexts (~230 KB each)
    # and the joined rounds' JSON behind; code that needs a context loads it on access.
    return Round.objects.select_related(
        "key_epoch", "policy", "base_round__key_epoch", "stats_round"
    ).defer(
        "key_epoch__public_context",
        "base_round__key_epoch__public_context",
        "base_round__policy_snapshot",
        "base_round__manifest",
        "stats_round__policy_snapshot",
        "stats_round__manifest",
    )


def round_in_flight() -> Round | None:
    return round_list().filter(state__in=[RoundState.OPEN, RoundState.AGGREGATING]).first()


def round_get(number: int) -> Round | None:
    return round_list().filter(number=number).first()


def key_epoch_current() -> KeyEpoch | None:
    return KeyEpoch.objects.filter(active=True).order_by("-number").first()

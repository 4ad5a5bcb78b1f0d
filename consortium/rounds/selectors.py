"""Reads for rounds: what a bank or operator may see."""

from __future__ import annotations

from django.db.models import QuerySet

from consortium.rounds.models import KeyEpoch, Round, RoundState


def round_list() -> QuerySet[Round]:
    return Round.objects.select_related(
        "key_epoch", "policy", "base_round__key_epoch", "stats_round"
    )


def round_in_flight() -> Round | None:
    return round_list().filter(state__in=[RoundState.OPEN, RoundState.AGGREGATING]).first()


def round_get(number: int) -> Round | None:
    return round_list().filter(number=number).first()


def key_epoch_current() -> KeyEpoch | None:
    return KeyEpoch.objects.filter(active=True).order_by("-number").first()

"""Reads for secure-aggregation v2 rounds: the cohort, mask keys, uploads and reveals."""

from __future__ import annotations

from consortium.governance import selectors as roster
from consortium.members.models import Bank
from consortium.members.selectors import bank_list_active
from consortium.rounds.models import MaskKey, Round, ShareReveal


def cohort_slugs() -> list[str] | None:
    """Sorted slugs of the roster's active members that are active banks; None without a roster."""
    members = roster.roster_active_slugs()
    if members is None:
        return None
    return sorted(bank_list_active().filter(slug__in=members).values_list("slug", flat=True))


def mask_key_list(rnd: Round) -> list[MaskKey]:
    """The round's advertised mask keys (``U1``), by bank slug."""
    return list(rnd.mask_keys.select_related("bank").order_by("bank__slug"))


def mask_key_slugs(rnd: Round) -> set[str]:
    return set(rnd.mask_keys.values_list("bank__slug", flat=True))


def mask_key_exists(rnd: Round, bank: Bank) -> bool:
    return MaskKey.objects.filter(round=rnd, bank=bank).exists()


def submission_slugs(rnd: Round) -> set[str]:
    return set(rnd.submissions.values_list("bank__slug", flat=True))


def share_reveal_list(rnd: Round) -> list[ShareReveal]:
    """The round's stored reveals, by bank slug."""
    return list(ShareReveal.objects.filter(round=rnd).select_related("bank").order_by("bank__slug"))


def share_reveal_slugs(rnd: Round) -> set[str]:
    return set(rnd.reveals.values_list("bank__slug", flat=True))

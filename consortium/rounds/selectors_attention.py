"""The banks an operator should look at: suspended, missing from recent rounds, near their
privacy budget, in a credential grace period, without a signing key, or flagged by a page."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.db.models import Exists, OuterRef, Q, QuerySet

from consortium.members.models import Bank, BankStatus
from consortium.rounds.models import Round, RoundKind, RoundState, Submission
from consortium.rounds.selectors import bank_table

RECENT_ROUNDS = 3  # a bank that sat out all of the last three closed rounds is listed
NEAR_BUDGET = 0.8  # ε signed at or above this share of the budget is listed


def rounds_closed_recent(limit: int = RECENT_ROUNDS) -> list[Round]:
    """The newest closed rounds every active bank was asked to join (one query)."""
    return list(
        Round.objects.filter(
            state__in=[RoundState.PUBLISHED, RoundState.FAILED],
            kind__in=[RoundKind.TRAINING, RoundKind.STATISTICS],
        )
        .only("pk", "number", "opened_at")
        .order_by("-number")[:limit]
    )


def bank_list_needing_attention(
    *,
    recent: list[Round],
    budget: float | None,
    flagged: Collection[str],
    now: datetime,
) -> QuerySet[Bank]:
    """``bank_table`` rows of the banks with at least one reason to look, each annotated
    with ``sat_out`` (missed every round in ``recent``); ``flagged`` are slugs a page
    already knows about (refused uploads). One query per page of banks, plus its count."""
    banks = bank_table().exclude(status=BankStatus.REVOKED)
    reasons = (
        Q(status=BankStatus.SUSPENDED)
        | Q(previous_credential_expires_at__gt=now)
        | Q(status=BankStatus.ACTIVE, signing_public_key="")
        | Q(slug__in=list(flagged))
    )
    if recent:
        took_part = Submission.objects.filter(bank=OuterRef("pk"), round__in=recent)
        banks = banks.annotate(sat_out=~Exists(took_part))
        # A bank onboarded after the oldest of those rounds opened was not asked to join it.
        oldest = min(r.opened_at for r in recent)
        reasons |= Q(status=BankStatus.ACTIVE, sat_out=True, created_at__lt=oldest)
    if budget:
        reasons |= Q(epsilon_signed__gte=NEAR_BUDGET * budget)
    return banks.filter(reasons)

"""Reads for member banks."""

from __future__ import annotations

from django.db.models import QuerySet

from consortium.members.models import Bank, BankStatus


def bank_list_active() -> QuerySet[Bank]:
    return Bank.objects.filter(status=BankStatus.ACTIVE)


def bank_get(slug: str) -> Bank | None:
    return Bank.objects.filter(slug=slug).first()

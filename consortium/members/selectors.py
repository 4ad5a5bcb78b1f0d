"""Reads for member banks."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from consortium.members.models import Bank, BankStatus


def bank_list() -> QuerySet[Bank]:
    return Bank.objects.order_by("slug")


def bank_list_active() -> QuerySet[Bank]:
    return Bank.objects.filter(status=BankStatus.ACTIVE)


def bank_get(slug: str) -> Bank | None:
    return Bank.objects.filter(slug=slug).first()


def bank_status_counts() -> dict[str, int]:
    counts = dict(Bank.objects.values_list("status").annotate(n=Count("id")).order_by())
    return {value: counts.get(value, 0) for value in BankStatus.values}

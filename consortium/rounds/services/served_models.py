"""Writes for the model version a bank reports its node serves."""

from __future__ import annotations

from django.db import transaction

from audit.services import audit_record
from consortium.api.errors import Conflict
from consortium.members.models import Bank
from consortium.rounds.models import Round, RoundKind, RoundState, ServedModel


@transaction.atomic
def served_model_report(*, rnd: Round, bank: Bank, version: str) -> ServedModel:
    """Record that ``bank`` serves published training round ``rnd``'s model as ``version``."""
    if rnd.kind != RoundKind.TRAINING:
        raise Conflict(f"round {rnd.number} is a {rnd.kind} round; only training rounds are models")
    if rnd.state != RoundState.PUBLISHED:
        raise Conflict(
            f"round {rnd.number} is {rnd.state}; only a published round's model is served"
        )
    served, _ = ServedModel.objects.update_or_create(
        bank=bank, defaults={"round": rnd, "version": version}
    )
    audit_record(
        action="model.served",
        actor=f"bank:{bank.slug}",
        target=served,
        data={"round": rnd.number, "version": version, "self_reported": True},
    )
    return served

"""Writes for the metrics a bank reports on a published round."""

from __future__ import annotations

from django.db import transaction

from audit.services import audit_record
from consortium.api.errors import Conflict
from consortium.members.models import Bank
from consortium.rounds.models import MetricReport, Round, RoundState


@transaction.atomic
def metrics_report(*, rnd: Round, bank: Bank, metrics: dict[str, float]) -> MetricReport:
    """Store the metrics a bank chose to report for a published round."""
    if rnd.state != RoundState.PUBLISHED:
        raise Conflict(f"round {rnd.number} is {rnd.state}; report metrics after it is published")
    report, _ = MetricReport.objects.update_or_create(
        round=rnd, bank=bank, defaults={"metrics": metrics}
    )
    audit_record(
        action="metrics.reported",
        actor=f"bank:{bank.slug}",
        target=report,
        data={"round": rnd.number, "metrics": metrics, "self_reported": True},
    )
    return report

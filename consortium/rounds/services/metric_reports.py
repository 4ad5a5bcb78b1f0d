"""Writes for what a bank reports on a published round: metrics, and its model's digest."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from audit.services import audit_record
from consortium.api.errors import Conflict
from consortium.members.models import Bank
from consortium.rounds.models import MetricReport, Round, RoundState


@transaction.atomic
def metrics_report(
    *, rnd: Round, bank: Bank, metrics: dict[str, float], model_digest: str = ""
) -> MetricReport:
    """Store the metrics a bank chose to report for a published round, and its model digest.

    Every node applies the policy's server optimiser to the same decrypted average, so all
    must produce the same model (``models.server_opt``): a digest that differs from one
    another bank reported is recorded as ``round.model_diverged``.
    """
    if rnd.state != RoundState.PUBLISHED:
        raise Conflict(f"round {rnd.number} is {rnd.state}; report metrics after it is published")
    # The round's row lock orders two banks' digest reports: without it each could miss the
    # other's uncommitted row, and a divergence would go unrecorded.
    Round.objects.select_for_update().filter(pk=rnd.pk).first()
    changes: dict[str, Any] = {"model_digest": model_digest} if model_digest else {}
    if metrics:
        changes["metrics"] = metrics
    report, _ = MetricReport.objects.update_or_create(
        round=rnd, bank=bank, defaults=changes, create_defaults={"metrics": metrics, **changes}
    )
    audit_record(
        action="metrics.reported",
        actor=f"bank:{bank.slug}",
        target=report,
        data={"round": rnd.number, "metrics": metrics, "self_reported": True}
        | ({"model_digest": model_digest} if model_digest else {}),
    )
    if model_digest:
        _diverged_record(rnd, bank, model_digest)
    return report


def _diverged_record(rnd: Round, bank: Bank, digest: str) -> None:
    """Audit ``round.model_diverged`` when another bank reported another model for ``rnd``."""
    others = dict(
        MetricReport.objects.filter(round=rnd)
        .exclude(bank=bank)
        .exclude(model_digest="")
        .exclude(model_digest=digest)
        .values_list("bank__slug", "model_digest")
    )
    if others:
        audit_record(
            action="round.model_diverged",
            actor=f"bank:{bank.slug}",
            target=rnd,
            data={"round": rnd.number, "bank": bank.slug, "model_digest": digest, "others": others},
        )

"""The retention policy for ciphertexts: delete old rounds' blobs, audited."""

from __future__ import annotations

import logging

from django.db import transaction

from audit.services import audit_record
from consortium.api.errors import ApplicationError
from consortium.rounds import storage
from consortium.rounds.selectors_retention import RetentionPlan, retention_plan

log = logging.getLogger(__name__)


def blobs_retain(*, keep_published: int, actor: str, dry_run: bool = False) -> RetentionPlan:
    """Delete the ciphertexts of rounds older than the newest ``keep_published`` published.

    The audit event (what is deleted: rounds, blob count, bytes) is committed *before*
    any file goes, so no ciphertext disappears without a record; a run interrupted
    half-way leaves the rest for the next run, which records it again. The digests of
    every deleted blob stay in the rounds' manifests and audit events.
    """
    if keep_published < 1:
        raise ApplicationError(
            f"keep_published must be at least 1, not {keep_published}: the newest published "
            "round is the base the next round builds on"
        )
    plan = retention_plan(keep_published=keep_published)
    if dry_run or not plan.rounds:
        return plan
    with transaction.atomic():
        audit_record(action="blobs.retained", actor=actor, data=_event_data(plan))
    for rnd in plan.rounds:
        for relpath, _ in rnd.blobs:
            storage.blob_remove(relpath)
    log.info(
        "retention: deleted %d blobs (%d bytes) of %d rounds older than round %s",
        plan.blob_count,
        plan.size,
        len(plan.rounds),
        plan.oldest_kept,
    )
    return plan


def _event_data(plan: RetentionPlan) -> dict[str, object]:
    return {
        "keep_published": plan.keep_published,
        "oldest_kept_round": plan.oldest_kept,
        "kept_as_base": list(plan.kept_as_base),
        # [round, blobs deleted, bytes]: one short row per round, whatever the bank count.
        "rounds": [[r.number, len(r.blobs), r.size] for r in plan.rounds],
        "blobs": plan.blob_count,
        "bytes": plan.size,
    }

"""A round's audited state changes, shared by the v1 scheduler and the v2 phases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from audit.services import audit_checkpoint_create, audit_record
from consortium.rounds.models import Round, RoundState


def round_fail(rnd: Round, now: datetime, reason: str) -> None:
    """Close a locked round as failed, with its audit event and a signed checkpoint."""
    rnd.state, rnd.closed_at, rnd.failure_reason = RoundState.FAILED, now, reason
    rnd.save(update_fields=["state", "closed_at", "failure_reason"])
    audit_record(
        action="round.failed",
        actor="scheduler",
        target=rnd,
        data={"round": rnd.number, "reason": reason},
    )
    audit_checkpoint_create(reason=f"round {rnd.number} failed")


def round_move(
    rnd: Round, state: RoundState, *, action: str, data: dict[str, Any], **fields: Any
) -> str:
    """Move a locked round to ``state`` (setting ``fields``), audited; returns a log line."""
    for name, value in fields.items():
        setattr(rnd, name, value)
    rnd.state = state
    rnd.save(update_fields=["state", *fields])
    audit_record(action=action, actor="scheduler", target=rnd, data={"round": rnd.number, **data})
    return f"round {rnd.number} {state}"

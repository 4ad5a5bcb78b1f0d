"""The scheduler's record of the consortium halting and resuming: one audit event per change."""

from __future__ import annotations

import logging

from audit.services import audit_consortium_state
from consortium.rounds.selectors_state import ConsortiumState, ConsortiumStatus, consortium_state

log = logging.getLogger(__name__)


def consortium_state_record() -> ConsortiumState:
    """Derive the consortium's state and audit it the first time it halts or resumes.

    Run at the end of every tick, after the round in flight moved and the next one had its
    chance to open: "halted" then means the scheduler just declined to open one.
    """
    state = consortium_state()
    halted = state.status == ConsortiumStatus.HALTED
    data = {
        "status": str(state.status),
        "sentence": state.sentence,
        "codes": state.codes,
        "reasons": [r.as_dict() for r in state.reasons],
        "way_forward": state.way_forward,
    }
    event = audit_consortium_state(halted=halted, data=data)
    if event is not None:
        log.warning("consortium %s (audit event #%s)", state.sentence, event.seq)
    return state

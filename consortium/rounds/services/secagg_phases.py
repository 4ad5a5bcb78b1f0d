"""Secure aggregation v2 in the scheduler: open a round in its sharing phase, close each phase.

The phases are those of ``docs/secure-aggregation.md`` ("The round protocol (part 2)"):
``sharing`` (mask keys) -> ``open`` (masked uploads) -> ``unmasking`` (reveals) ->
``aggregating``. Each ends when every bank expected in it has acted, or at its deadline with
at least the Shamir threshold; otherwise the round fails with a reason that says how many
of how many arrived. The caller holds the round's row lock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from consortium.governance import selectors as roster
from consortium.rounds import selectors_secagg as secagg
from consortium.rounds.models import Round, RoundPolicy, RoundState
from consortium.rounds.services.transitions import round_fail, round_move
from protocol import secagg_threshold


class RoundNotOpened(Exception):
    """A v2 round cannot open under the active policy; the message says why."""


def secagg_open_fields(policy: RoundPolicy, now: datetime) -> dict[str, Any]:
    """The fields a v2 round opens with: sharing, its cohort, threshold and phase deadline.

    Raises :class:`RoundNotOpened` without a stored roster (the cohort's keys come from it)
    or with a cohort outside ``[max(policy, roster min_banks), MAX_BANKS_PER_ROUND]``.
    """
    cohort = secagg.cohort_slugs()
    if cohort is None:
        raise RoundNotOpened(
            f"policy {policy} asks for secure aggregation v2, which needs the banks' signed "
            "roster (their agreement keys) and none is in force: found the consortium first, "
            "or run a policy with secure_aggregation v1"
        )
    need = max(policy.min_banks, roster.roster_min_banks())
    if len(cohort) < need:
        raise RoundNotOpened(
            f"only {len(cohort)} active roster members are active banks ({', '.join(cohort)}); "
            f"a v2 round under policy {policy} needs at least {need}"
        )
    if len(cohort) > settings.MAX_BANKS_PER_ROUND:
        raise RoundNotOpened(
            f"the cohort of {len(cohort)} banks is above the portal's limit of "
            f"{settings.MAX_BANKS_PER_ROUND} banks per round (CONSORTIUM_MAX_BANKS_PER_ROUND): "
            "the sum would leave the CKKS headroom the nodes check"
        )
    return {
        "state": RoundState.SHARING,
        "cohort": cohort,
        "threshold": secagg_threshold(len(cohort), need),
        "phase_deadline_at": now + policy.deadline / 4,
    }


def phase_close_due(rnd: Round, now: datetime) -> list[str]:
    """Close the locked v2 round's current phase if it is due (sharing, open or unmasking)."""
    closers = {
        RoundState.SHARING: _sharing_close,
        RoundState.OPEN: _uploads_close,
        RoundState.UNMASKING: _unmasking_close,
    }
    return closers[RoundState(rnd.state)](rnd, now)


def _due(got: set[str], expected: set[str], rnd: Round, now: datetime, end: datetime) -> bool:
    """Everyone expected acted, or the phase ended with at least the threshold."""
    threshold = rnd.threshold or 0
    return len(got) >= threshold and (expected <= got or now >= end)


def _quarter(rnd: Round) -> timedelta:
    """A phase lasts a quarter of the policy's deadline (the one the round froze)."""
    return timedelta(seconds=rnd.policy_snapshot["deadline_seconds"]) / 4


def _phase_end(rnd: Round) -> datetime:
    # Rows written before phase deadlines existed have none: the round deadline bounds them.
    return rnd.phase_deadline_at or rnd.deadline_at


def _fail(rnd: Round, now: datetime, got: int, what: str, phase: str) -> list[str]:
    reason = f"only {got} of the {rnd.threshold} {what} needed arrived by the end of {phase}"
    round_fail(rnd, now, reason)
    return [f"round {rnd.number} failed: {reason}"]


def _sharing_close(rnd: Round, now: datetime) -> list[str]:
    cohort = set(rnd.cohort)
    posted = secagg.mask_key_slugs(rnd) & cohort
    if _due(posted, cohort, rnd, now, _phase_end(rnd)):
        data = {"mask_keys": sorted(posted), "threshold": rnd.threshold}
        return [round_move(rnd, RoundState.OPEN, action="round.keys_shared", data=data)]
    if now >= _phase_end(rnd):
        return _fail(rnd, now, len(posted), "mask keys", "the sharing phase")
    return []


def _uploads_close(rnd: Round, now: datetime) -> list[str]:
    posters = secagg.mask_key_slugs(rnd)  # U1: only they may upload
    uploaded = secagg.submission_slugs(rnd) & posters
    if _due(uploaded, posters, rnd, now, rnd.deadline_at):
        survivors, dropped = sorted(uploaded), sorted(posters - uploaded)
        phase_deadline_at = now + _quarter(rnd)
        data = {
            "survivors": survivors,
            "dropped": dropped,
            "phase_deadline_at": phase_deadline_at.isoformat(),
        }
        moved = round_move(
            rnd,
            RoundState.UNMASKING,
            action="round.unmasking",
            data=data,
            survivors=survivors,
            dropped=dropped,
            phase_deadline_at=phase_deadline_at,
        )
        return [moved]
    if now >= rnd.deadline_at:
        return _fail(rnd, now, len(uploaded), "updates", "the upload deadline")
    return []


def _unmasking_close(rnd: Round, now: datetime) -> list[str]:
    survivors = set(rnd.survivors)
    revealed = secagg.share_reveal_slugs(rnd) & survivors
    if _due(revealed, survivors, rnd, now, _phase_end(rnd)):
        data = {"reveals": sorted(revealed), "submissions": len(survivors)}
        moved = round_move(
            rnd, RoundState.AGGREGATING, action="round.aggregating", data=data, aggregating_at=now
        )
        return [moved]
    if now >= _phase_end(rnd):
        return _fail(rnd, now, len(revealed), "reveals", "the unmasking phase")
    return []

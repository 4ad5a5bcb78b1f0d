"""The scheduler's writes: close due rounds, aggregate, publish or fail, open the next."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import BinaryIO

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from audit.services import audit_checkpoint_create, audit_record
from consortium import metrics
from consortium.governance import selectors as roster
from consortium.members.selectors import bank_list_active
from consortium.rounds import selectors, selectors_state, storage
from consortium.rounds.crypto import epoch_context, epoch_params
from consortium.rounds.models import (
    IN_FLIGHT_STATES,
    KeyEpoch,
    Round,
    RoundKind,
    RoundPolicy,
    RoundState,
    Submission,
)
from consortium.rounds.services.gate import GateStep, gate_next
from consortium.rounds.services.halts import consortium_state_record
from consortium.rounds.services.secagg_aggregate import UnmaskFailed, secagg_sum
from consortium.rounds.services.secagg_phases import (
    RoundNotOpened,
    phase_close_due,
    secagg_open_fields,
)
from consortium.rounds.services.transitions import round_fail
from he.aggregate import sum_vectors
from he.codec import TRAILER_SLOTS
from he.errors import HEError
from models.gate import GATE_VECTOR_LENGTH
from protocol import Manifest, ManifestInput, SecAggRecord

log = logging.getLogger(__name__)


def scheduler_tick(now: datetime | None = None) -> list[str]:
    """Advance every round that is due. Safe to run from several processes at once."""
    now = now or timezone.now()
    done = round_close_due(now)
    for number in selectors.round_numbers_aggregating():
        done += round_aggregate(number)
    done += round_open_next(now)
    # Logged and audited on a change only; not in ``done``, which lists rounds that moved.
    consortium_state_record()
    storage.sweep_temp()
    return done


@transaction.atomic
def round_close_due(now: datetime) -> list[str]:
    """Move the round in flight to its next state, or fail it, when its rule says so.

    v1: open -> aggregating. v2 (``secagg_phases``): sharing -> open -> unmasking ->
    aggregating.
    """
    collecting = [RoundState.SHARING, RoundState.OPEN, RoundState.UNMASKING]
    rnd = Round.objects.select_for_update(skip_locked=True).filter(state__in=collecting).first()
    if rnd is None:
        return []
    disputed = _disputed_dependency(rnd)
    if disputed is not None:
        # Every honest node refuses to build on it: waiting for the deadline gains nothing.
        why = f"round {disputed} it builds on is disputed by the banks' signed objections"
        round_fail(rnd, now, why)
        return [f"round {rnd.number} failed: {why}"]
    if rnd.masked:
        return phase_close_due(rnd, now)
    submitted = selectors.submission_bank_ids(rnd)
    active = set(roster.roster_filter_active(bank_list_active()).values_list("id", flat=True))
    min_banks = max(rnd.policy_snapshot["min_banks"], roster.roster_min_banks())  # roster floor
    everyone = bool(active) and active <= submitted
    if len(submitted) >= min_banks and (everyone or now >= rnd.deadline_at):
        rnd.state, rnd.aggregating_at = RoundState.AGGREGATING, now
        rnd.save(update_fields=["state", "aggregating_at"])
        audit_record(
            action="round.aggregating",
            actor="scheduler",
            target=rnd,
            data={"round": rnd.number, "submissions": len(submitted)},
        )
        return [f"round {rnd.number} aggregating"]
    if now >= rnd.deadline_at:
        round_fail(
            rnd,
            now,
            f"only {len(submitted)} of the {min_banks} required updates arrived by the deadline",
        )
        return [f"round {rnd.number} failed"]
    return []


def _disputed_dependency(rnd: Round) -> int | None:
    """The base (or, for an evaluation round, the candidate) of ``rnd`` if it is disputed.

    A round opens on the newest published round before the nodes have checked it; when
    enough of them refuse it, it becomes disputed, and the round in flight on top of it
    can only fail. Derived from the signed objections each time, like every dispute.
    """
    numbers = [dep.number for dep in (rnd.base_round, rnd.candidate_round) if dep is not None]
    disputed = roster.rounds_disputed(numbers) if numbers else set()
    return min(disputed) if disputed else None


@transaction.atomic
def round_aggregate(number: int) -> list[str]:
    """Sum a round's ciphertexts and publish the result with its manifest.

    The round row stays locked while we add; another scheduler skips it. A crash rolls
    back to 'aggregating' and the next tick starts again; the blob is written to a temp
    file and renamed, so no reader ever sees half an aggregate.
    """
    rnd = (
        Round.objects.select_for_update(skip_locked=True)
        .filter(number=number, state=RoundState.AGGREGATING)
        .select_related("key_epoch")
        .first()
    )
    if rnd is None:
        return []
    subs = selectors.submission_list_for_round(rnd)
    if rnd.masked:  # v2: the survivors' uploads only (no other is accepted anyway)
        subs = [s for s in subs if s.bank.slug in rnd.survivors]
    tmp = storage.temp_path()
    started = time.monotonic()
    try:
        with open(tmp, "wb") as out:
            digest, record = _sum(rnd, subs, out)
        relpath = storage.aggregate_relpath(rnd.number)
        size = tmp.stat().st_size
        storage.commit(tmp, relpath)
    except UnmaskFailed as exc:
        log.error("unmasking round %s failed: %s", rnd.number, exc)
        round_fail(rnd, timezone.now(), f"unmasking failed: {exc}")
        return [f"round {rnd.number} failed in unmasking"]
    except (HEError, OSError) as exc:
        log.error("aggregation of round %s failed: %s", rnd.number, exc)
        metrics.AGGREGATION_ERRORS.inc()
        round_fail(rnd, timezone.now(), f"aggregation failed: {exc}")
        return [f"round {rnd.number} failed in aggregation"]
    finally:
        tmp.unlink(missing_ok=True)
    _fault_pause_before_publish(rnd.number)
    rnd.state, rnd.closed_at = RoundState.PUBLISHED, timezone.now()
    rnd.aggregate_digest, rnd.aggregate_size, rnd.aggregate_blob = digest, size, relpath
    rnd.manifest = Manifest(
        round=rnd.number,
        key_epoch=rnd.key_epoch.fingerprint,
        aggregate_digest=digest,
        inputs=tuple(
            ManifestInput(
                bank=s.bank.slug,
                digest=s.digest,
                # Nodes verify each input under the bank's roster key, not the portal's word.
                signature=s.signature,
                epsilon=s.epsilon_spent,
                budget_left=s.budget_left,
            )
            for s in subs
        ),
        secure_aggregation=record,
    ).to_dict()
    rnd.save(
        update_fields=[
            "state",
            "closed_at",
            "aggregate_digest",
            "aggregate_size",
            "aggregate_blob",
            "manifest",
        ]
    )
    audit_record(action="round.published", actor="scheduler", target=rnd, data=rnd.manifest)
    audit_checkpoint_create(reason=f"round {rnd.number} published")
    metrics.round_published(rnd.opened_at, rnd.closed_at, time.monotonic() - started)
    return [f"round {rnd.number} published ({len(subs)} updates)"]


def _sum(rnd: Round, subs: list[Submission], out: BinaryIO) -> tuple[str, SecAggRecord | None]:
    """The round's encrypted sum into ``out``: its digest, and the v2 evidence if masked."""
    with storage.local_copies([s.blob for s in subs]) as paths:
        if rnd.masked:
            return secagg_sum(rnd, paths, out)
        epoch = rnd.key_epoch
        return sum_vectors(paths, epoch_context(epoch), epoch_params(epoch), out), None


def _fault_pause_before_publish(number: int) -> None:
    """TEST-ONLY fault injection: hold here, aggregate blob in place, publish not committed.

    Off unless CONSORTIUM_FAULT_SLEEP_IN_AGGREGATION is set (tests/faults kills the
    scheduler during this pause to show that a crash publishes nothing, half or twice).
    """
    seconds = settings.FAULT_SLEEP_IN_AGGREGATION_SECONDS
    if seconds:
        log.warning(
            "fault injection: round %s aggregated, pausing %ss before publishing", number, seconds
        )
        time.sleep(seconds)


def round_open_next(now: datetime) -> list[str]:
    """Open the next round under the active policy, unless one is in flight or it is done."""
    chosen = selectors.policy_and_epoch_next()
    if chosen is None:
        return []
    policy, epoch = chosen
    with transaction.atomic():
        # The policy row lock serialises openers; the partial unique index backs it up.
        RoundPolicy.objects.select_for_update().get(pk=policy.pk)
        if Round.objects.filter(state__in=IN_FLIGHT_STATES).exists():
            return []
        if _stopped(policy):
            return []
        gate = gate_next(policy, now)
        if gate.step == GateStep.WAIT:
            return []
        if gate.step == GateStep.TRAIN and _done_training(policy):
            return []
        kind, stats = _kind_next(policy, epoch, gate.step)
        try:
            rnd = round_open(
                policy=policy,
                epoch=epoch,
                now=now,
                kind=kind,
                stats_round=stats,
                candidate=gate.candidate,
            )
        except IntegrityError:
            return []
        except RoundNotOpened as exc:
            log.warning("no round opened: %s", exc)
            return [f"no round opened: {exc}"]
    return [f"{kind} round {rnd.number} opened"]


def _kind_next(policy: RoundPolicy, epoch: KeyEpoch, step: GateStep) -> tuple[str, Round | None]:
    """The kind of the next round and, for a training round, its statistics round."""
    if step == GateStep.EVALUATE:
        return RoundKind.EVALUATION, None
    # Sketches first: the statistics round then has the cross-bank features' moments too.
    if policy.counterparty_sketch is not None and selectors.round_sketch_for(policy, epoch) is None:
        return RoundKind.SKETCH, None
    stats = selectors.round_stats_for(policy, epoch)
    if policy.normalize_features and stats is None:
        return RoundKind.STATISTICS, None
    return RoundKind.TRAINING, stats


def _stopped(policy: RoundPolicy) -> bool:
    """Too many failed rounds in a row under ``policy``: the scheduler opens nothing more."""
    return selectors_state.failures_in_a_row(policy) >= policy.max_consecutive_failures


def _done_training(policy: RoundPolicy) -> bool:
    """``max_rounds`` training rounds published (statistics and evaluation rounds do not
    count), or the consortium's privacy budget is spent (``selectors_state`` says so too)."""
    trained = selectors_state.training_rounds_published(policy)
    return trained >= policy.max_rounds or selectors_state.privacy_budget_spend(policy) is not None


def _shape(
    policy: RoundPolicy, kind: str, stats_round: Round | None, candidate: Round | None
) -> dict[str, object]:
    """What a round of ``kind`` carries: its vector length, base, statistics and candidate.

    A statistics round carries feature moments and has no base; a sketch round the
    banks' counterparty sketches, with no base either. An evaluation round
    carries the gate's score histograms and compares ``candidate`` with the candidate's
    own base, normalised with the candidate's statistics round.
    """
    if kind == RoundKind.EVALUATION:
        if candidate is None:
            raise ValueError("an evaluation round needs the training round it gates")
        return {
            "vector_length": GATE_VECTOR_LENGTH + TRAILER_SLOTS,
            "base_round": candidate.base_round,
            "stats_round": candidate.stats_round,
            "candidate_round": candidate,
        }
    training = kind == RoundKind.TRAINING
    if kind == RoundKind.SKETCH:
        return {
            "vector_length": policy.sketch_vector_length,
            "base_round": None,
            "stats_round": None,
        }
    return {
        "vector_length": policy.vector_length if training else policy.stats_vector_length,
        "base_round": selectors.round_base_for(policy) if training else None,
        "stats_round": stats_round if training else None,
    }


def round_open(
    *,
    policy: RoundPolicy,
    epoch: KeyEpoch,
    now: datetime,
    kind: str = RoundKind.TRAINING,
    stats_round: Round | None = None,
    candidate: Round | None = None,
) -> Round:
    """Open a round with a frozen snapshot of the policy and the newest usable base.

    A statistics round carries feature moments instead of weights; it has no base; an
    evaluation round gates ``candidate`` (``_shape``). Under a v2 policy the round opens
    in its sharing phase with its cohort and threshold, or not at all
    (:class:`RoundNotOpened`).
    """
    secagg = secagg_open_fields(policy, now) if policy.secure_aggregation == "v2" else {}
    with transaction.atomic():
        number = (Round.objects.aggregate(n=Max("number"))["n"] or 0) + 1
        shape = _shape(policy, kind, stats_round, candidate)
        rnd = Round.objects.create(
            number=number,
            kind=kind,
            policy=policy,
            policy_snapshot=policy.snapshot(),
            key_epoch=epoch,
            opened_at=now,
            deadline_at=now + policy.deadline,
            **shape,
            **secagg,
        )
        base = rnd.base_round
        audit_record(
            action="round.opened",
            actor="scheduler",
            target=rnd,
            data={
                "round": number,
                "kind": kind,
                "stats_round": rnd.stats_round.number if rnd.stats_round else None,
                "policy": str(policy),
                "key_epoch": epoch.fingerprint,
                "base_round": base.number if base else None,
                **({"candidate_round": candidate.number} if candidate is not None else {}),
                "deadline_at": rnd.deadline_at.isoformat(),
                **_secagg_audit(rnd),
            },
        )
    return rnd


def _secagg_audit(rnd: Round) -> dict[str, object]:
    """What the opening event adds for a v2 round: its cohort, threshold and sharing deadline."""
    if not rnd.masked or rnd.phase_deadline_at is None:
        return {}
    return {
        "state": rnd.state,
        "cohort": rnd.cohort,
        "threshold": rnd.threshold,
        "phase_deadline_at": rnd.phase_deadline_at.isoformat(),
    }

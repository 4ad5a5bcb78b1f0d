"""Writes for policies, key epochs, rounds, submissions and metrics.

Each function is one domain operation in one transaction, with its audit event. State
transitions lock the round row first.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from audit.services import audit_checkpoint_create, audit_record
from consortium import metrics
from consortium.api.errors import ApplicationError, Conflict
from consortium.members.models import Bank
from consortium.members.selectors import bank_list_active
from consortium.rounds import storage
from consortium.rounds.crypto import epoch_context, epoch_params
from consortium.rounds.models import (
    POLICY_FIELDS,
    KeyEpoch,
    MetricReport,
    Round,
    RoundKind,
    RoundPolicy,
    RoundState,
    Submission,
)
from he.aggregate import sum_vectors
from he.errors import HEError, SecretKeyPresent, UpdateInvalid
from he.keys import fingerprint as context_fingerprint
from he.keys import load_public_context
from he.params import CkksParams
from he.signing import update_message, verify
from he.validate import validate_vector
from protocol import Manifest, ManifestInput, PolicySnapshot, PrivacyClaim

log = logging.getLogger(__name__)


# --- policies -------------------------------------------------------------------------


# An encrypted value costs at least 32 bytes on the wire (2 x 8-byte coefficients per
# slot and data prime); a model whose update cannot fit the upload limit is refused before
# it is built (a hostile spec of huge layers would otherwise exhaust the worker's memory).
CIPHERTEXT_BYTES_PER_VALUE = 32


def _model_vector_length(spec: dict[str, Any], n_features: int) -> int:
    # Imported here: only policy creation needs torch, not every portal request.
    from models.nets import build_model
    from models.vector import vector_length

    if not isinstance(spec, dict):
        raise ApplicationError(
            'model_spec must be an object, e.g. {"kind": "mlp", "hidden": [32, 16], "seed": 1}'
        )
    hidden = spec.get("hidden", [])
    if not isinstance(hidden, list) or not all(
        isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden
    ):
        raise ApplicationError("model_spec.hidden must be a list of positive layer widths")
    widths = [n_features, *hidden, 1]
    rough = sum(a * b + b for a, b in itertools.pairwise(widths))
    limit = settings.MAX_UPLOAD_BYTES // CIPHERTEXT_BYTES_PER_VALUE
    if rough > limit:
        raise ApplicationError(
            f"model_spec has about {rough} parameters; an encrypted update of more than "
            f"{limit} does not fit the {settings.MAX_UPLOAD_BYTES}-byte upload limit"
        )
    try:
        return vector_length(build_model(spec, n_features)) + 1  # + the count slot
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ApplicationError(f"model_spec is not a model we can build: {exc}") from exc


@transaction.atomic
def policy_create(*, name: str, actor: str, activate: bool = False, **fields: Any) -> RoundPolicy:
    """Create the next version of policy ``name`` (version 1 if new)."""
    unknown = set(fields) - set(POLICY_FIELDS)
    if unknown:
        raise ApplicationError(f"unknown policy fields: {', '.join(sorted(unknown))}")
    try:
        CkksParams.from_dict(fields.get("ckks_params") or RoundPolicy().ckks_params)
    except HEError as exc:
        raise ApplicationError(f"ckks_params: {exc}") from exc
    latest = RoundPolicy.objects.select_for_update().filter(name=name).aggregate(v=Max("version"))
    policy = RoundPolicy(name=name, version=(latest["v"] or 0) + 1, created_by=actor, **fields)
    from models.features import FEATURE_NAMES

    policy.n_features = len(FEATURE_NAMES)
    policy.vector_length = _model_vector_length(policy.model_spec, policy.n_features)
    try:
        policy.full_clean()
    except ValidationError as exc:
        raise ApplicationError(
            "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()),
            fields=exc.message_dict,
        ) from exc
    policy.save()
    audit_record(action="policy.created", actor=actor, target=policy, data=policy.snapshot())
    if activate:
        policy_activate(policy=policy, actor=actor)
    return policy


@transaction.atomic
def policy_new_version(*, base: RoundPolicy, actor: str, **changes: Any) -> RoundPolicy:
    """Copy ``base`` with ``changes`` into a new version; ``base`` itself is never edited."""
    fields = {f: getattr(base, f) for f in POLICY_FIELDS}
    fields.update(changes)
    return policy_create(name=base.name, actor=actor, activate=base.active, **fields)


@transaction.atomic
def policy_activate(*, policy: RoundPolicy, actor: str) -> RoundPolicy:
    """Make ``policy`` the one the scheduler follows; every other version is deactivated."""
    RoundPolicy.objects.exclude(pk=policy.pk).filter(active=True).update(active=False)
    RoundPolicy.objects.filter(pk=policy.pk).update(active=True)
    policy.active = True
    audit_record(action="policy.activated", actor=actor, target=policy)
    return policy


# --- key epochs -----------------------------------------------------------------------


@transaction.atomic
def key_epoch_register(
    *, public_context: bytes, ckks_params: dict[str, Any], actor: str
) -> KeyEpoch:
    """Store a new consortium public context; refuse anything carrying a secret key."""
    try:
        params = CkksParams.from_dict(ckks_params)
        load_public_context(public_context, params)
    except SecretKeyPresent as exc:
        raise ApplicationError(str(exc)) from exc
    except HEError as exc:
        raise ApplicationError(f"public context refused: {exc}") from exc
    fp = context_fingerprint(public_context)
    if KeyEpoch.objects.filter(fingerprint=fp).exists():
        raise Conflict(f"key epoch {fp[:16]}... is already registered")
    last = KeyEpoch.objects.select_for_update().aggregate(n=Max("number"))["n"] or 0
    KeyEpoch.objects.filter(active=True).update(active=False)
    epoch = KeyEpoch.objects.create(
        number=last + 1,
        fingerprint=fp,
        ckks_params=params.to_dict(),
        public_context=public_context,
        created_by=actor,
    )
    audit_record(
        action="key_epoch.registered",
        actor=actor,
        target=epoch,
        data={"number": epoch.number, "fingerprint": fp, "ckks_params": epoch.ckks_params},
    )
    return epoch


# --- submissions ----------------------------------------------------------------------


def _reject(bank: Bank, round_number: int | None, reason: str, exc: ApplicationError) -> None:
    """Record a refused upload in the trail, then raise; the round itself is untouched."""
    with transaction.atomic():
        audit_record(
            action="update.rejected",
            actor=f"bank:{bank.slug}",
            target=bank,
            data={"round": round_number, "reason": reason},
        )
    metrics.update_rejected(reason)
    raise exc


def update_precheck(*, rnd: Round, bank: Bank, digest: str, signature: str) -> Submission | None:
    """Cheap checks before reading a body. Returns the existing submission on a retry."""
    existing = Submission.objects.filter(round=rnd, bank=bank).first()
    if existing is not None:
        if existing.digest == digest:
            return existing
        _reject(
            bank,
            rnd.number,
            "second different upload",
            Conflict(
                f"bank {bank.slug} already submitted {existing.digest[:16]}... to round "
                f"{rnd.number}; a different update cannot replace it",
            ),
        )
    _check_round_accepts(rnd, bank)
    if not bank.signing_public_key:
        _reject(
            bank,
            rnd.number,
            "no signing key",
            ApplicationError(
                "register your Ed25519 signing key before uploading (bank-node register)"
            ),
        )
    if len(digest) != 64 or not signature:
        _reject(
            bank,
            rnd.number,
            "missing digest or signature",
            ApplicationError(
                "send the SHA-256 of the body in X-Update-Digest and its Ed25519 signature in "
                "X-Update-Signature"
            ),
        )
    return None


def _check_round_accepts(rnd: Round, bank: Bank) -> None:
    if rnd.state != RoundState.OPEN:
        _reject(
            bank,
            rnd.number,
            f"round {rnd.state}",
            Conflict(f"round {rnd.number} is {rnd.state} and no longer accepts updates"),
        )
    if timezone.now() >= rnd.deadline_at:
        _reject(
            bank,
            rnd.number,
            "after deadline",
            Conflict(f"round {rnd.number} passed its deadline at {rnd.deadline_at.isoformat()}"),
        )


def _privacy_check(rnd: Round, bank: Bank, claim: PrivacyClaim) -> None:
    """Under a DP policy a training update must state its cumulative epsilon, within budget."""
    snapshot = PolicySnapshot.from_dict(rnd.policy_snapshot)
    if not snapshot.dp_enabled or rnd.kind != RoundKind.TRAINING:
        return
    if claim.epsilon is None:
        _reject(
            bank,
            rnd.number,
            "no epsilon reported",
            ApplicationError(
                "this round's policy requires differential privacy: train with DP-SGD and send the "
                "cumulative epsilon in X-Privacy-Epsilon"
            ),
        )
    target = snapshot.dp_target_epsilon
    if target is not None and claim.epsilon is not None and claim.epsilon > target * (1 + 1e-6):
        _reject(
            bank,
            rnd.number,
            "privacy budget exceeded",
            ApplicationError(
                f"reported epsilon {claim.epsilon:.3f} exceeds the policy's budget of {target:g}; "
                "this bank must stop contributing under this policy",
                status_code=403,
            ),
        )


def update_submit(
    *,
    rnd: Round,
    bank: Bank,
    body_path: Path,
    digest: str,
    signature: str,
    privacy: PrivacyClaim | None = None,
) -> Submission:
    """Validate an uploaded body (already on disk, in a temp file) and accept it.

    Consumes ``body_path``: it is either moved into place or deleted.
    """
    try:
        return _update_submit(
            rnd=rnd,
            bank=bank,
            body_path=body_path,
            digest=digest,
            signature=signature,
            privacy=privacy or PrivacyClaim(),
        )
    finally:
        body_path.unlink(missing_ok=True)


def _update_submit(
    *,
    rnd: Round,
    bank: Bank,
    body_path: Path,
    digest: str,
    signature: str,
    privacy: PrivacyClaim,
) -> Submission:
    _privacy_check(rnd, bank, privacy)
    epoch = rnd.key_epoch
    try:
        with open(body_path, "rb") as body:
            checked = validate_vector(
                body,
                epoch_context(epoch),
                epoch_params(epoch),
                fingerprint=epoch.fingerprint,
                expected_length=rnd.vector_length,
            )
    except UpdateInvalid as exc:
        _reject(
            bank,
            rnd.number,
            f"invalid ciphertext: {exc}",
            ApplicationError(f"update refused: {exc}"),
        )
    if checked.digest != digest:
        _reject(
            bank,
            rnd.number,
            "digest mismatch",
            ApplicationError(
                "the body's SHA-256 does not match X-Update-Digest: it was altered or truncated "
                "in transit; retry the upload",
                computed=checked.digest,
            ),
        )
    if not verify(
        bank.signing_public_key, update_message(rnd.number, bank.slug, digest), signature
    ):
        _reject(
            bank,
            rnd.number,
            "bad signature",
            ApplicationError(
                f"signature does not verify with bank {bank.slug}'s registered key for round "
                f"{rnd.number}; sign (round, bank, digest) with your current signing key",
                status_code=403,
            ),
        )
    return _update_store(
        rnd, bank, body_path, checked.digest, signature, checked.size_bytes, privacy
    )


def _update_store(
    rnd: Round,
    bank: Bank,
    body_path: Path,
    digest: str,
    signature: str,
    size: int,
    privacy: PrivacyClaim,
) -> Submission:
    relpath = storage.upload_relpath(rnd.number, bank.slug, digest)
    with transaction.atomic():
        # Lock the round so the scheduler cannot close it between our check and insert.
        rnd = Round.objects.select_for_update().get(pk=rnd.pk)
        existing = Submission.objects.filter(round=rnd, bank=bank).first()
        if existing is not None and existing.digest == digest:
            return existing
        if existing is not None:
            # A different update won a race with this one (two uploads in flight at once):
            # refuse before its blob is put in place, or it would be left behind unreferenced.
            raise Conflict(f"bank {bank.slug} already submitted to round {rnd.number}")
        _check_round_accepts(rnd, bank)
        # The blob goes in place before the row that names it commits: a crash in between
        # leaves an unreferenced file (the same bytes a retry writes again), never a row
        # without its blob. A failure seen before the commit removes the file again (not
        # one *at* commit: the commit may have happened, and then the row needs the file).
        storage.commit(body_path, relpath)
        try:
            sub = _submission_record(rnd, bank, digest, signature, size, relpath, privacy)
        except BaseException:
            storage.absolute(relpath).unlink(missing_ok=True)
            raise
        metrics.UPDATES_ACCEPTED.inc()
        return sub


def _submission_record(
    rnd: Round,
    bank: Bank,
    digest: str,
    signature: str,
    size: int,
    relpath: str,
    privacy: PrivacyClaim,
) -> Submission:
    try:
        with transaction.atomic():
            sub = Submission.objects.create(
                round=rnd,
                bank=bank,
                digest=digest,
                signature=signature,
                signing_public_key=bank.signing_public_key,
                size_bytes=size,
                blob=relpath,
                epsilon_spent=privacy.epsilon,
                budget_left=privacy.budget_left,
            )
    except IntegrityError:
        raise Conflict(f"bank {bank.slug} already submitted to round {rnd.number}") from None
    audit_record(
        action="update.accepted",
        actor=f"bank:{bank.slug}",
        target=sub,
        data={
            "round": rnd.number,
            "bank": bank.slug,
            "digest": digest,
            "signature": signature,
            "signing_public_key": bank.signing_public_key,
            "size_bytes": size,
            "epsilon_spent": privacy.epsilon,
            "budget_left": privacy.budget_left,
        },
    )
    return sub


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


# --- the scheduler ----------------------------------------------------------------------


def scheduler_tick(now: datetime | None = None) -> list[str]:
    """Advance every round that is due. Safe to run from several processes at once."""
    now = now or timezone.now()
    done = round_close_due(now)
    for number in Round.objects.filter(state=RoundState.AGGREGATING).values_list(
        "number", flat=True
    ):
        done += round_aggregate(number)
    done += round_open_next(now)
    storage.sweep_temp()
    return done


@transaction.atomic
def round_close_due(now: datetime) -> list[str]:
    """Move the open round to aggregating, or fail it, when its rule says so."""
    rnd = Round.objects.select_for_update(skip_locked=True).filter(state=RoundState.OPEN).first()
    if rnd is None:
        return []
    submitted = set(rnd.submissions.values_list("bank_id", flat=True))
    active = set(bank_list_active().values_list("id", flat=True))
    min_banks = rnd.policy_snapshot["min_banks"]
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
        _round_fail(
            rnd,
            now,
            f"only {len(submitted)} of the {min_banks} required updates arrived by the deadline",
        )
        return [f"round {rnd.number} failed"]
    return []


def _round_fail(rnd: Round, now: datetime, reason: str) -> None:
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
    subs = list(rnd.submissions.select_related("bank").order_by("bank__slug"))
    tmp = storage.temp_path()
    started = time.monotonic()
    try:
        with open(tmp, "wb") as out:
            digest = sum_vectors(
                [storage.absolute(s.blob) for s in subs],
                epoch_context(rnd.key_epoch),
                epoch_params(rnd.key_epoch),
                out,
            )
        relpath = storage.aggregate_relpath(rnd.number)
        size = tmp.stat().st_size
        storage.commit(tmp, relpath)
    except (HEError, OSError) as exc:
        log.error("aggregation of round %s failed: %s", rnd.number, exc)
        metrics.AGGREGATION_ERRORS.inc()
        _round_fail(rnd, timezone.now(), f"aggregation failed: {exc}")
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
        inputs=tuple(ManifestInput(bank=s.bank.slug, digest=s.digest) for s in subs),
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


def _next_policy_and_epoch() -> tuple[RoundPolicy, KeyEpoch] | None:
    policy = RoundPolicy.objects.filter(active=True).order_by("-created_at").first()
    epoch = KeyEpoch.objects.filter(active=True).order_by("-number").first()
    if policy is None or epoch is None:
        return None
    if CkksParams.from_dict(policy.ckks_params) != CkksParams.from_dict(epoch.ckks_params):
        log.warning("active policy %s and key epoch %s disagree on CKKS parameters", policy, epoch)
        return None
    return policy, epoch


def round_open_next(now: datetime) -> list[str]:
    """Open the next round under the active policy, unless one is in flight or it is done."""
    chosen = _next_policy_and_epoch()
    if chosen is None:
        return []
    policy, epoch = chosen
    with transaction.atomic():
        # The policy row lock serialises openers; the partial unique index backs it up.
        RoundPolicy.objects.select_for_update().get(pk=policy.pk)
        if Round.objects.filter(state__in=[RoundState.OPEN, RoundState.AGGREGATING]).exists():
            return []
        history = list(policy.rounds.order_by("-number").values_list("state", "kind"))
        trained = sum(
            1 for s, k in history if s == RoundState.PUBLISHED and k == RoundKind.TRAINING
        )
        if trained >= policy.max_rounds:
            return []
        failures = next(
            (i for i, (s, _) in enumerate(history) if s != RoundState.FAILED), len(history)
        )
        if failures >= policy.max_consecutive_failures:
            return []
        if _privacy_budget_spent(policy):
            return []
        stats = _stats_round_for(policy, epoch)
        kind = (
            RoundKind.STATISTICS
            if policy.normalize_features and stats is None
            else RoundKind.TRAINING
        )
        try:
            rnd = round_open(policy=policy, epoch=epoch, now=now, kind=kind, stats_round=stats)
        except IntegrityError:
            return []
    return [f"{kind} round {rnd.number} opened"]


def _privacy_budget_spent(policy: RoundPolicy) -> bool:
    """The consortium's budget is spent when, in the last published training round, fewer
    than ``min_banks`` banks said another round would still fit in their own DP budget."""
    if not policy.dp_enabled or policy.dp_target_epsilon is None:
        return False
    last = (
        policy.rounds.filter(kind=RoundKind.TRAINING, state=RoundState.PUBLISHED)
        .order_by("-number")
        .first()
    )
    if last is None:
        return False
    able = last.submissions.filter(budget_left=True).count()
    return able < policy.min_banks


def _stats_round_for(policy: RoundPolicy, epoch: KeyEpoch) -> Round | None:
    """The newest published statistics round usable under this policy and key epoch."""
    return (
        Round.objects.filter(
            kind=RoundKind.STATISTICS,
            state=RoundState.PUBLISHED,
            key_epoch=epoch,
            vector_length=policy.stats_vector_length,
        )
        .order_by("-number")
        .first()
    )


def _base_round_for(policy: RoundPolicy) -> Round | None:
    """The newest published training round whose model this policy can continue from."""
    # Any key epoch: after a key rotation, members holding the previous key decrypt the
    # last aggregate made under it, and training continues instead of starting over.
    candidates = Round.objects.filter(
        kind=RoundKind.TRAINING,
        state=RoundState.PUBLISHED,
        vector_length=policy.vector_length,
    ).order_by("-number")[:20]
    return next(
        (r for r in candidates if r.policy_snapshot.get("model_spec") == policy.model_spec), None
    )


def round_open(
    *,
    policy: RoundPolicy,
    epoch: KeyEpoch,
    now: datetime,
    kind: str = RoundKind.TRAINING,
    stats_round: Round | None = None,
) -> Round:
    """Open a round with a frozen snapshot of the policy and the newest usable base.

    A statistics round carries feature moments instead of weights; it has no base.
    """
    with transaction.atomic():
        number = (Round.objects.aggregate(n=Max("number"))["n"] or 0) + 1
        training = kind == RoundKind.TRAINING
        base = _base_round_for(policy) if training else None
        rnd = Round.objects.create(
            number=number,
            kind=kind,
            vector_length=policy.vector_length if training else policy.stats_vector_length,
            stats_round=stats_round if training else None,
            policy=policy,
            policy_snapshot=policy.snapshot(),
            key_epoch=epoch,
            base_round=base,
            opened_at=now,
            deadline_at=now + policy.deadline,
        )
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
                "deadline_at": rnd.deadline_at.isoformat(),
            },
        )
    return rnd


def blob_open(relpath: str) -> Any:
    """Open a stored blob for streaming; the caller closes it."""
    path = storage.absolute(relpath)
    if not os.path.exists(path):
        raise ApplicationError("the stored blob is missing", status_code=410)
    return open(path, "rb")

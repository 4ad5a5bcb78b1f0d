"""Writes for submissions: the upload precheck, validation, storage and its record.

Each refusal is marked for the audit trail (``update.rejected``), which records it once the
request is answered (``consortium.api.errors.refusal_record``); the round is untouched.
The cheap checks, the signature over the declared digest among them, run before a byte of
the body is read.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, NoReturn

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import audit_record
from consortium import metrics
from consortium.api.errors import ApplicationError, Conflict, Forbidden
from consortium.governance import selectors as roster
from consortium.members.models import Bank
from consortium.rounds import selectors, storage
from consortium.rounds.models import Round, RoundKind, RoundState, Submission
from consortium.rounds.uploads import (
    Upload,
    body_check,
    body_to_temp,
    masked_upload_refusal,
    upload_limit,
)
from he.errors import UpdateInvalid
from he.signing import update_signature_valid
from protocol import PolicySnapshot, PrivacyClaim


def _rejected(bank: Bank, round_number: int | None, reason: str, exc: ApplicationError) -> Any:
    """``exc`` marked for the audit trail as a refused upload of ``bank``."""
    return exc.audited(
        action="update.rejected",
        actor=f"bank:{bank.slug}",
        target=bank,
        data={"round": round_number, "reason": reason},
    )


def _reject(bank: Bank, round_number: int | None, reason: str, exc: ApplicationError) -> NoReturn:
    """Count and raise a refused upload, marked for the audit trail; the round is untouched."""
    metrics.update_rejected(reason)
    raise _rejected(bank, round_number, reason, exc)


def submission_create(
    *,
    rnd: Round,
    bank: Bank,
    upload: Upload,
    admit: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> tuple[Submission, bool]:
    """Accept ``upload`` into ``rnd``: returns the submission and whether it is new.

    A retry of an accepted digest answers with the stored submission before anything is
    read. Otherwise the body is read inside ``admit()`` (the caller's admission control),
    streamed to a temp file, validated, stored and recorded.
    """
    existing = update_precheck(
        rnd=rnd,
        bank=bank,
        digest=upload.digest,
        signature=upload.signature,
        privacy=upload.privacy,
    )
    if existing is not None:
        return existing, False
    with admit():
        try:
            body_path = body_to_temp(upload, limit=upload_limit(rnd))
        except ApplicationError as exc:  # too large, empty or cut short (counted already)
            raise _rejected(bank, rnd.number, exc.message, exc) from None
        sub = update_submit(
            rnd=rnd,
            bank=bank,
            body_path=body_path,
            digest=upload.digest,
            signature=upload.signature,
            privacy=upload.privacy,
        )
    return sub, True


def update_precheck(
    *,
    rnd: Round,
    bank: Bank,
    digest: str,
    signature: str,
    privacy: PrivacyClaim | None = None,
) -> Submission | None:
    """Cheap checks before reading a body. Returns the existing submission on a retry."""
    existing = selectors.submission_get(rnd, bank)
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
    if refusal := roster.upload_refusal(bank.slug):  # roster: active members only
        _reject(bank, rnd.number, "not a roster member", Forbidden(refusal))
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
    _signature_check(rnd, bank, digest, signature, _claim_that_counts(rnd, privacy))
    return None


def _dp_training_policy(rnd: Round) -> PolicySnapshot | None:
    """The round's policy when its updates carry a privacy claim (DP on, a training round)."""
    snapshot = PolicySnapshot.from_dict(rnd.policy_snapshot)
    return snapshot if snapshot.dp_enabled and rnd.kind == RoundKind.TRAINING else None


def _claim_that_counts(rnd: Round, claim: PrivacyClaim | None) -> PrivacyClaim:
    """The privacy claim the signature covers: none outside DP training rounds."""
    if claim is None or _dp_training_policy(rnd) is None:
        return PrivacyClaim()
    return claim


def _signature_check(
    rnd: Round, bank: Bank, digest: str, signature: str, claim: PrivacyClaim
) -> None:
    """The signature over the *declared* digest: one Ed25519 check, before the body is read.

    A forged upload then costs the portal no body read and no validation; once the body is
    read, its computed digest must still equal the declared (signed) one.
    """
    if not update_signature_valid(
        roster.upload_verify_key(bank),
        rnd.number,
        bank.slug,
        digest,
        signature,
        epsilon=claim.epsilon,
        budget_left=claim.budget_left,
    ):
        _reject(
            bank,
            rnd.number,
            "bad signature",
            ApplicationError(
                f"signature does not verify with bank {bank.slug}'s registered key for round "
                f"{rnd.number}; sign (round, bank, digest, epsilon, budget left) with your "
                "current signing key (message consortium-update-v2)",
                status_code=403,
            ),
        )


def _check_round_accepts(rnd: Round, bank: Bank) -> None:
    if rnd.masked and (refusal := masked_upload_refusal(rnd, bank)):
        _reject(bank, rnd.number, *refusal)
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
    if not rnd.masked:  # a v2 round's cohort was capped when it opened (secagg_phases)
        _check_room(rnd, bank)


def _check_room(rnd: Round, bank: Bank) -> None:
    """Refuse a v1 upload beyond MAX_BANKS_PER_ROUND: more summands could wrap the sum.

    Race-free where it counts: ``_update_store`` calls it again under the round's row lock.
    """
    limit = settings.MAX_BANKS_PER_ROUND
    if selectors.submission_count(rnd) >= limit:
        _reject(
            bank,
            rnd.number,
            "round full",
            Conflict(
                f"round {rnd.number} already holds {limit} updates, the most one sum may add "
                "without overflow (CONSORTIUM_MAX_BANKS_PER_ROUND); this bank's update is "
                "not needed in this round, join the next one"
            ),
        )


def _privacy_check(rnd: Round, bank: Bank, claim: PrivacyClaim) -> PrivacyClaim:
    """Under a DP policy a training update must state its cumulative epsilon, within budget.

    Returns the claim that counts: none at all outside DP training rounds, where an
    epsilon means nothing and is neither stored nor covered by the signature.
    """
    snapshot = _dp_training_policy(rnd)
    if snapshot is None:
        return PrivacyClaim()
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
    return claim


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

    Call it after :func:`update_precheck`, which checked the signature over ``digest``;
    here the body's own digest must equal it. Consumes ``body_path``: it is either moved
    into place or deleted.
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
    privacy = _privacy_check(rnd, bank, privacy)
    try:
        computed, size = body_check(rnd, body_path)
    except UpdateInvalid as exc:
        _reject(
            bank,
            rnd.number,
            f"invalid ciphertext: {exc}",
            ApplicationError(f"update refused: {exc}"),
        )
    if computed != digest:
        # The signature was checked over the declared digest before the body was read;
        # the body must be what was signed.
        _reject(
            bank,
            rnd.number,
            "digest mismatch",
            ApplicationError(
                "the body's SHA-256 does not match X-Update-Digest: it was altered or truncated "
                "in transit; retry the upload",
                computed=computed,
            ),
        )
    return _update_store(rnd, bank, body_path, computed, signature, size, privacy)


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
        existing = selectors.submission_get(rnd, bank)
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
            storage.blob_remove(relpath)
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
                signing_public_key=roster.upload_verify_key(bank),  # roster: the key that verified
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
            "signing_public_key": roster.upload_verify_key(bank),  # roster
            "size_bytes": size,
            "epsilon_spent": privacy.epsilon,
            "budget_left": privacy.budget_left,
        },
    )
    return sub

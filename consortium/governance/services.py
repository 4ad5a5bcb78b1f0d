"""Writes for the roster: proposals, bank signatures, withdrawals and objections.

The portal stores what banks send and checks it with the ``governance`` library so that it
keeps nothing invalid; it cannot make a version valid, since it holds no bank's key. Every
refusal is marked for the audit trail, which records it after the refused change rolled
back (``consortium.api.errors.refusal_record``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.selectors import audit_round_event_recorded
from audit.services import audit_record
from consortium.api.errors import ApplicationError, Conflict, Forbidden, NotFound
from consortium.governance import selectors
from consortium.governance.models import (
    DisputeClearance,
    Objection,
    RosterSignature,
    RosterVersion,
    VersionStatus,
)
from consortium.members.models import Bank, BankStatus
from governance import (
    Dispute,
    Genesis,
    RosterError,
    RosterState,
    apply,
    change_from_dict,
    clearance_refusal,
    describe,
    next_version,
    pending_approvals,
    verify_genesis,
    verify_objection,
    version_hash,
)
from governance import Objection as SignedObjection
from governance import RosterVersion as SignedVersion

T = TypeVar("T")
MAX_ROUND_NUMBER = selectors.MAX_ROUND_NUMBER


def _refused(action: str, actor: str, data: dict[str, Any], work: Callable[[], T]) -> T:
    """Run ``work``; a refusal is raised marked for the audit trail as ``action``."""
    try:
        return work()
    except RosterError as exc:
        raise ApplicationError(str(exc), code=exc.code).audited(
            action=action, actor=actor, data=data
        ) from None
    except ApplicationError as exc:
        exc.audited(action=action, actor=actor, data=data)
        raise


def _now_iso() -> str:
    return timezone.now().replace(microsecond=0).isoformat()


def _store(version: SignedVersion, state: RosterState | None, actor: str) -> RosterVersion:
    try:
        with transaction.atomic():
            row = RosterVersion.objects.create(
                number=version.number,
                version_hash=version_hash(version),
                previous_hash=version.previous_hash,
                body=version.body(),
                kind=version.change.kind,
                summary=describe(version.change, state),
                proposed_by=actor,
            )
    except IntegrityError:
        raise Conflict(
            f"roster version {version.number} is already proposed or in force; "
            "withdraw the pending version first"
        ) from None
    audit_record(
        action="roster.proposed",
        actor=actor,
        target=row,
        data={"number": row.number, "hash": row.version_hash, "summary": row.summary},
    )
    return row


def _no_pending() -> None:
    pending = selectors.roster_pending().first()
    if pending is not None:
        raise Conflict(
            f"roster version {pending.number} ({pending.summary}) is still pending; it must "
            "take effect or be withdrawn before another change is proposed",
            pending=pending.number,
        )


def roster_genesis_propose(*, version_json: Any, actor: str) -> RosterVersion:
    """Store the drafted genesis (unsigned or partly signed) for the founders to sign."""
    return _refused(
        "roster.proposal_refused",
        actor,
        {"kind": "genesis"},
        lambda: _genesis_propose(version_json, actor),
    )


@transaction.atomic
def _genesis_propose(version_json: Any, actor: str) -> RosterVersion:
    version = SignedVersion.from_dict(version_json)
    if not isinstance(version.change, Genesis):
        raise ApplicationError('a genesis must carry {"kind": "genesis", "charter": {...}}')
    if RosterVersion.objects.exclude(status=VersionStatus.WITHDRAWN).exists():
        raise Conflict("a roster genesis already exists; propose a change instead")
    _no_pending()
    pending_approvals(None, version)  # raises when it could never become valid
    row = _store(version, None, actor)
    for bank_id, signature in sorted(version.signatures.items()):
        # Founders' signatures relayed by the proposer: each is checked like any other.
        _signature_add(row, bank_id, signature, actor=actor)
    return row


def roster_change_propose(*, change: Any, actor: str) -> RosterVersion:
    """Build version head+1 carrying ``change`` and store it, pending the banks' signatures."""
    kind = change.get("kind") if isinstance(change, dict) else None
    return _refused(
        "roster.proposal_refused",
        actor,
        {"kind": str(kind)[:40]},
        lambda: _change_propose(change, actor),
    )


@transaction.atomic
def _change_propose(change: Any, actor: str) -> RosterVersion:
    state = selectors.roster_state()
    if state is None:
        raise Conflict("no roster genesis is in force yet; the founders must sign one first")
    # Lock the head so two proposals racing for the same number see one order; the
    # partial unique indexes back this up.
    RosterVersion.objects.select_for_update().filter(version_hash=state.head_hash).first()
    _no_pending()
    version = next_version(state, change_from_dict(change), _now_iso())
    pending_approvals(state, version)  # raises when the change does not fit the roster
    return _store(version, state, actor)


def roster_version_sign(*, number: int, bank_slug: str, signature: str) -> RosterVersion:
    """Add ``bank_slug``'s signature; the version takes effect once enough have signed."""
    actor = f"bank:{bank_slug}"
    return _refused(
        "roster.signature_refused",
        actor,
        {"number": number, "bank": bank_slug},
        lambda: _sign(number, bank_slug, signature, actor),
    )


def _locked_pending(number: int) -> RosterVersion:
    # Lock the version: two banks signing at once must not both see it one short and
    # leave it pending for ever, nor both put it in force.
    row = (
        RosterVersion.objects.select_for_update()
        .exclude(status=VersionStatus.WITHDRAWN)
        .filter(number=number)
        .first()
    )
    if row is None:
        raise NotFound(f"roster version {number} does not exist or was withdrawn")
    if row.status != VersionStatus.PENDING:
        raise Conflict(f"roster version {number} is already {row.status}; nothing to sign")
    return row


@transaction.atomic
def _sign(number: int, bank_slug: str, signature: str, actor: str) -> RosterVersion:
    row = _locked_pending(number)
    existing = row.signatures.filter(bank_id=bank_slug).first()
    if existing is not None:
        if existing.signature == signature:
            return row
        raise Conflict(f"bank {bank_slug!r} already signed roster version {number}")
    _signature_add(row, bank_slug, signature, actor=actor)
    return row


def _signature_check(row: RosterVersion, state: RosterState | None, bank: str, sig: str) -> None:
    """Refuse a signature that would not count: the library decides, on it alone."""
    alone = dataclasses.replace(selectors.signed_version(row), signatures={bank: sig})
    pending = pending_approvals(state, alone)
    if bank in pending.signed or (pending.proof_of == bank and pending.proof_ok):
        return
    why = pending.ignored.get(bank) or "signature does not verify under the key it must use"
    raise Forbidden(f"roster version {row.number}: signature of bank {bank!r} refused: {why}")


def _signature_add(row: RosterVersion, bank_id: str, signature: str, *, actor: str) -> None:
    state = selectors.roster_state() if row.number else None
    _signature_check(row, state, bank_id, signature)
    RosterSignature.objects.create(version=row, bank_id=bank_id, signature=signature)
    audit_record(
        action="roster.signed",
        actor=actor,
        target=row,
        data={"number": row.number, "bank": bank_id, "signature": signature},
    )
    row.refresh_from_db()
    full = selectors.signed_version(row)
    if pending_approvals(state, full).complete:
        _in_force(row, full, state)


def _in_force(row: RosterVersion, full: SignedVersion, state: RosterState | None) -> None:
    new_state = verify_genesis(full) if state is None else apply(state, full)
    row.status, row.in_force_at = VersionStatus.IN_FORCE, timezone.now()
    row.save(update_fields=["status", "in_force_at"])
    audit_record(
        action="roster.in_force",
        actor="roster",
        target=row,
        data={
            "number": row.number,
            "hash": row.version_hash,
            "summary": row.summary,
            "signers": sorted(full.signatures),
        },
    )
    _mirror(new_state)


def _mirror(state: RosterState) -> None:
    """Bring portal Bank rows in line with the roster (status, signing key).

    Banks the roster admits but the operator has not onboarded get no row: the operator
    creates API accounts, the roster decides membership.
    """
    members = {m.bank_id: m for m in state.members}
    for bank in Bank.objects.select_for_update().filter(slug__in=members):
        member = members[bank.slug]
        changed: dict[str, Any] = {}
        if bank.status != str(member.status):
            changed["status"] = {"from": bank.status, "to": str(member.status)}
            bank.status, bank.status_changed_at = BankStatus(member.status), timezone.now()
        if bank.signing_public_key != member.signing_key:
            changed["signing_public_key"] = {
                "from": bank.signing_public_key,
                "to": member.signing_key,
            }
            bank.signing_public_key = member.signing_key
            bank.signing_key_registered_at = timezone.now()
        if changed:
            bank.save()
            audit_record(action="bank.roster_synced", actor="roster", target=bank, data=changed)


@transaction.atomic
def roster_version_withdraw(*, number: int, actor: str) -> RosterVersion:
    """The operator withdraws a pending version; its number is free again."""
    row = _locked_pending(number)
    row.status = VersionStatus.WITHDRAWN
    row.save(update_fields=["status"])
    audit_record(
        action="roster.withdrawn",
        actor=actor,
        target=row,
        data={"number": row.number, "hash": row.version_hash},
    )
    return row


def objection_record(*, bank: Bank, objection_json: Any, signature: str) -> Objection:
    """Store a node's signed refusal of a round, verified under the bank's roster key."""
    actor = f"bank:{bank.slug}"
    return _refused(
        "objection.refused",
        actor,
        {"bank": bank.slug},
        lambda: _objection_record(bank, objection_json, signature, actor),
    )


def _objection_key(state: RosterState | None, objection: SignedObjection, bank: Bank) -> str:
    if state is None:
        raise Conflict("no roster genesis is in force; objections are signed under roster keys")
    if objection.bank_id != bank.slug:
        raise Forbidden(
            f"the objection names bank {objection.bank_id!r} but you are {bank.slug!r}; "
            "a bank objects only for itself"
        )
    if objection.consortium_id != state.consortium_id:
        raise ApplicationError(
            f"objection.consortium_id {objection.consortium_id!r} is not this consortium "
            f"({state.consortium_id!r})"
        )
    member = state.member(bank.slug)
    if member is None:
        raise Forbidden(f"bank {bank.slug!r} is not on the roster")
    return member.signing_key


@transaction.atomic
def _objection_record(bank: Bank, objection_json: Any, signature: str, actor: str) -> Objection:
    objection = SignedObjection.from_dict(objection_json)
    if objection.round_number > MAX_ROUND_NUMBER:
        raise ApplicationError(f"objection.round_number must be at most {MAX_ROUND_NUMBER}")
    key = _objection_key(selectors.roster_state(), objection, bank)
    if not verify_objection(objection, signature, key):
        raise Forbidden(f"the objection's signature does not verify under {bank.slug}'s roster key")
    existing = Objection.objects.filter(signature=signature).first()
    if existing is not None:
        return existing
    row = Objection.objects.create(
        bank=bank,
        round_number=objection.round_number,
        reason_code=objection.reason_code,
        message=objection.message,
        body=objection.to_dict(),
        signature=signature,
    )
    audit_record(
        action="objection.recorded",
        actor=actor,
        target=row,
        data={**objection.to_dict(), "signature": signature},
    )
    _dispute_audit_once(objection.round_number)
    return row


# --- disputed rounds: audited when they arise, cleared only by the banks' signatures ----


def _dispute_audit_once(number: int) -> None:
    """Audit round ``number`` becoming disputed, the first time it is.

    Called after this transaction appended to the trail, so it holds the trail's head
    lock: a concurrent objection to the same round waits, then sees this event.
    """
    if number == 0 or audit_round_event_recorded(action="round.disputed", round_number=number):
        return
    dispute = selectors.dispute_get(number)
    if dispute is not None and dispute.disputed:
        audit_record(action="round.disputed", actor="roster", data=dispute.as_dict())


def dispute_clearance_sign(*, number: int, bank_slug: str, signature: str) -> Dispute:
    """Store ``bank_slug``'s signature clearing round ``number``'s dispute, if it counts."""
    actor = f"bank:{bank_slug}"
    return _refused(
        "dispute.clearance_refused",
        actor,
        {"round": number, "bank": bank_slug},
        lambda: _clearance_add(number, bank_slug, signature, actor),
    )


def _disputed(number: int, bank_slug: str, signature: str) -> Dispute:
    """Round ``number``'s dispute, once the clearance is one the roster would count."""
    state = selectors.roster_state()
    if state is None:
        raise Conflict("no roster genesis is in force; clearances are signed under roster keys")
    if not 1 <= number <= MAX_ROUND_NUMBER:
        raise ApplicationError(f"round number must be between 1 and {MAX_ROUND_NUMBER}")
    why = clearance_refusal(state, number, bank_slug, signature)
    if why is not None:
        raise Forbidden(f"clearance of round {number} by bank {bank_slug!r} refused: {why}")
    dispute = selectors.dispute_get(number)
    if dispute is None:
        raise Conflict(f"round {number} is not disputed; there is nothing to clear")
    return dispute


@transaction.atomic
def _clearance_add(number: int, bank_slug: str, signature: str, actor: str) -> Dispute:
    dispute = _disputed(number, bank_slug, signature)
    # One clearance per bank: a second one, even the same bytes, would not count twice.
    if DisputeClearance.objects.filter(round_number=number, bank_id=bank_slug).exists():
        raise Conflict(f"bank {bank_slug!r} already signed the clearance of round {number}")
    if dispute.cleared:
        raise Conflict(f"the dispute of round {number} is already cleared")
    DisputeClearance.objects.create(round_number=number, bank_id=bank_slug, signature=signature)
    audit_record(
        action="dispute.clearance_signed",
        actor=actor,
        data={"round": number, "bank": bank_slug, "signature": signature},
    )
    after = selectors.dispute_get(number) or dispute
    # Under the trail's head lock (taken just above): exactly one clearance audits it.
    if after.cleared and not audit_round_event_recorded(
        action="round.dispute_cleared", round_number=number
    ):
        audit_record(action="round.dispute_cleared", actor="roster", data=after.as_dict())
    return after

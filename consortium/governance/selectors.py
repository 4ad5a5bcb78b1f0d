"""Reads of the roster, and the checks other apps call to enforce it.

Every answer about who is a member, with which key, and what is approved comes from
re-verifying the stored chain with the banks' signatures (``governance.verify_chain``),
never from a row the operator could edit. ``roster_state()`` is None while no genesis is
in force: "legacy mode", in which the portal behaves as it did before the roster.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db.models import QuerySet

from audit.selectors import audit_objections_recorded
from consortium.governance.models import (
    DisputeClearance,
    Objection,
    RosterVersion,
    VersionStatus,
)
from governance import (
    Dispute,
    Pending,
    RosterError,
    RosterState,
    dispute_of,
    pending_approvals,
    verify_chain,
)
from governance import Objection as SignedObjection
from governance import RosterVersion as SignedVersion

if TYPE_CHECKING:
    from consortium.members.models import Bank
    from consortium.rounds.models import RoundPolicy

# Verified states by head hash: verifying the chain costs a few signature checks per
# version, and uploads and the scheduler ask on every request. A new version in force
# changes the head hash, so a stale entry is never used.
_verified: dict[str, RosterState] = {}
_CACHE_SIZE = 4
# The largest value every database's positive integer column holds.
MAX_ROUND_NUMBER = 2**31 - 1


def roster_versions(*, after: int | None = None) -> QuerySet[RosterVersion]:
    """The versions in force, oldest first, with their signatures."""
    versions = RosterVersion.objects.filter(status=VersionStatus.IN_FORCE)
    if after is not None:
        versions = versions.filter(number__gt=after)
    return versions.prefetch_related("signatures").order_by("number")


def roster_pending() -> QuerySet[RosterVersion]:
    """The version(s) waiting for signatures (at most one)."""
    return (
        RosterVersion.objects.filter(status=VersionStatus.PENDING)
        .prefetch_related("signatures")
        .order_by("number")
    )


def roster_version_get(number: int) -> RosterVersion | None:
    """The live (pending or in-force) version ``number``."""
    return (
        RosterVersion.objects.exclude(status=VersionStatus.WITHDRAWN)
        .filter(number=number)
        .prefetch_related("signatures")
        .first()
    )


def signed_version(row: RosterVersion) -> SignedVersion:
    """The library's version from a stored row and the signatures collected for it."""
    signatures = {s.bank_id: s.signature for s in row.signatures.all()}
    return SignedVersion.from_dict({**row.body, "signatures": signatures})


def roster_state() -> RosterState | None:
    """The verified roster in force, or None before a genesis is (legacy mode)."""
    head = (
        RosterVersion.objects.filter(status=VersionStatus.IN_FORCE)
        .order_by("-number")
        .values_list("version_hash", flat=True)
        .first()
    )
    if head is None:
        return None
    state = _verified.get(head)
    if state is None:
        rows = list(roster_versions())
        # Stored rows went in force only after the same check; re-verifying them means a
        # row edited in the database afterwards can never widen what the banks agreed to.
        state = verify_chain(signed_version(rows[0]), [signed_version(r) for r in rows[1:]])
        if len(_verified) >= _CACHE_SIZE:
            _verified.pop(next(iter(_verified)))
        _verified[head] = state
    return state


def version_pending(row: RosterVersion, state: RosterState | None) -> Pending | str:
    """Who has signed a pending version and who is missing, or why it can never pass."""
    try:
        return pending_approvals(state if row.number else None, signed_version(row))
    except RosterError as exc:
        return str(exc)


def objection_list() -> QuerySet[Objection]:
    return Objection.objects.select_related("bank").order_by("-received_at")


def objection_list_for_round(number: int) -> QuerySet[Objection]:
    """The objections naming round ``number``, oldest first, for its page."""
    return objection_list().filter(round_number=number).order_by("received_at", "pk")


# --- disputed rounds: derived from the signed objections, never from a stored flag --------


def _signed(body: object, signature: object) -> tuple[SignedObjection, str] | None:
    """An objection as signed, or None when it no longer parses (it counts for nothing)."""
    try:
        return SignedObjection.from_dict(body), str(signature)
    except RosterError:
        return None


def _objections_by_round(wanted: set[int]) -> dict[int, list[tuple[SignedObjection, str]]]:
    """Every signed objection naming these rounds: the portal's rows and the trail's copies.

    Selected by the round number inside the signed body, not the row's column, and read
    from the hash-chained trail too: editing or deleting rows hides nothing.
    """
    found: dict[str, tuple[SignedObjection, str]] = {}
    rows = Objection.objects.filter(body__round_number__in=list(wanted))
    for body, signature in rows.values_list("body", "signature"):
        if (item := _signed(body, signature)) is not None:
            found[item[1]] = item
    for data in audit_objections_recorded(rounds=list(wanted)):
        signature = data.pop("signature", "")
        if (item := _signed(data, signature)) is not None:
            found.setdefault(item[1], item)
    by_round: dict[int, list[tuple[SignedObjection, str]]] = {}
    for objection, signature in found.values():
        by_round.setdefault(objection.round_number, []).append((objection, signature))
    return by_round


def disputes_for(numbers: Iterable[int]) -> dict[int, Dispute]:
    """The dispute state of each of these rounds that enough banks objected to.

    Every objection and clearance signature is verified again under the roster in force,
    so a row edited, inserted or "resolved" in the database changes nothing. Empty in
    legacy mode (objections are signed under roster keys).
    """
    state = roster_state()
    wanted = {n for n in numbers if 0 < n <= MAX_ROUND_NUMBER}
    if state is None or not wanted:
        return {}
    by_round = _objections_by_round(wanted)
    clearances: dict[int, dict[str, str]] = {}
    for c in DisputeClearance.objects.filter(round_number__in=list(by_round)):
        clearances.setdefault(c.round_number, {})[c.bank_id] = c.signature
    out = {}
    for number, signed in by_round.items():
        dispute = dispute_of(state, number, signed, clearances.get(number, {}))
        if dispute.objected:
            out[number] = dispute
    return out


def dispute_get(number: int) -> Dispute | None:
    """Round ``number``'s dispute (disputed or cleared), or None when not enough objected."""
    return disputes_for([number]).get(number)


def rounds_disputed(numbers: Iterable[int]) -> set[int]:
    """Which of these rounds are disputed now (objected to and not cleared)."""
    return {n for n, d in disputes_for(numbers).items() if d.disputed}


def round_is_disputed(number: int) -> bool:
    return number in rounds_disputed([number])


def dispute_list() -> list[Dispute]:
    """Every round enough banks objected to, disputed or cleared, newest first."""
    numbers = Objection.objects.filter(round_number__gt=0).values_list("round_number", flat=True)
    disputes = disputes_for({int(n) for n in numbers.distinct() if n is not None})
    return [disputes[n] for n in sorted(disputes, reverse=True)]


# --- what other apps call to enforce the roster ------------------------------------------


def roster_signing_key(bank_slug: str) -> str | None:
    """The roster signing key of an active member; None for anyone else or in legacy mode."""
    state = roster_state()
    return state.signing_key_of(bank_slug) if state is not None else None


def roster_is_member(bank_slug: str) -> bool:
    """True for an active roster member; True for everyone in legacy mode."""
    state = roster_state()
    return state is None or state.signing_key_of(bank_slug) is not None


def roster_allows_policy(name: str, version: int, digest: str) -> bool:
    state = roster_state()
    return state is None or state.is_policy_approved(name, version, digest)


def roster_key_epoch_in_force(fingerprint: str) -> bool:
    state = roster_state()
    return state is None or state.key_epoch_in_force(fingerprint)


def roster_min_banks() -> int:
    """The charter's ``min_banks`` floor; 0 in legacy mode (the policy's own value rules)."""
    state = roster_state()
    return state.min_banks if state is not None else 0


def roster_active_slugs() -> set[str] | None:
    """Slugs of the active roster members; None in legacy mode."""
    state = roster_state()
    return None if state is None else {m.bank_id for m in state.active_members()}


def roster_filter_active(banks: QuerySet[Bank]) -> QuerySet[Bank]:
    """``banks`` narrowed to the active roster members (unchanged in legacy mode)."""
    slugs = roster_active_slugs()
    return banks if slugs is None else banks.filter(slug__in=slugs)


def policy_digest(policy: RoundPolicy) -> str:
    """``PolicySnapshot.digest()`` of the policy: what banks approve, and what nodes recompute."""
    return policy.as_snapshot().digest()


def upload_verify_key(bank: Bank) -> str:
    """The key an upload's signature must verify under: the roster's, once one is in force."""
    if roster_state() is None:
        return str(bank.signing_public_key)
    return roster_signing_key(bank.slug) or ""


def upload_refusal(bank_slug: str) -> str | None:
    """Why ``bank_slug`` may not upload under the roster, or None when it may."""
    if roster_is_member(bank_slug):
        return None
    return (
        f"bank {bank_slug!r} is not an active member of the consortium's signed roster; "
        "the member banks must admit or reinstate it before it can upload"
    )


def policy_refusal(policy: RoundPolicy) -> str | None:
    """Why the roster refuses to let ``policy`` run, or None when the banks approved it."""
    digest = policy_digest(policy)
    if roster_allows_policy(policy.name, policy.version, digest):
        return None
    return (
        f"policy {policy.name} v{policy.version} (snapshot sha256 {digest}) is not approved "
        "in the banks' roster; propose a roster change "
        f'{{"kind": "approve_policy", "policy": {{"name": "{policy.name}", '
        f'"version": {policy.version}, "digest": "{digest}"}}}} '
        "and have the member banks sign it"
    )


def key_epoch_refusal(fingerprint: str) -> str | None:
    """Why the roster refuses key epoch ``fingerprint``, or None when it is in force."""
    if roster_key_epoch_in_force(fingerprint):
        return None
    return (
        f"key epoch {fingerprint} is not in force in the banks' roster; propose a roster "
        f'change {{"kind": "register_key_epoch", "fingerprint": "{fingerprint}"}} '
        "and have the member banks sign it"
    )


def bank_change_refusal(bank_slug: str, what: str) -> str | None:
    """Why an operator may not change ``what`` of a roster member directly, or None."""
    state = roster_state()
    if state is None or state.member(bank_slug) is None:
        return None
    return (
        f"bank {bank_slug!r}'s {what} is set by the banks' signed roster; propose a roster "
        "change (suspend_bank, reinstate_bank, revoke_bank or rotate_bank_keys) and have "
        "the member banks sign it"
    )

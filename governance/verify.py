"""Verifying the roster chain: links, changes, and the banks' own threshold signatures."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from governance.changes import AdmitBank, Genesis, RotateBankKeys, subject_of
from governance.charter import Charter, Member, RosterState
from governance.effects import change_effect
from governance.encoding import MIN_BANKS_FLOOR, ZERO_HASH
from governance.errors import RosterError
from governance.version import RosterVersion, roster_message, version_hash
from he.signing import verify


@dataclass(frozen=True)
class Pending:
    """Where a proposed version stands: who has signed, who could still, what is missing.

    ``signed`` are the banks whose signatures count; ``missing`` the eligible banks that
    have not (validly) signed; ``ignored`` maps every other signature entry to why it does
    not count. ``proof_of`` names the bank that must also sign under its new key.
    """

    needed: int
    signed: tuple[str, ...]
    missing: tuple[str, ...]
    ignored: dict[str, str] = field(default_factory=dict)
    proof_of: str | None = None
    proof_ok: bool = True

    @property
    def missing_count(self) -> int:
        return max(0, self.needed - len(self.signed))

    @property
    def complete(self) -> bool:
        return self.missing_count == 0 and self.proof_ok

    def shortfall(self) -> str:
        """Why the version is not (yet) valid, in words a person can act on."""
        parts = []
        if self.missing_count:
            parts.append(
                f"has {len(self.signed)} valid approval(s) of {self.needed} needed "
                f"(signed: {', '.join(self.signed) or 'nobody'}; "
                f"not yet signed: {', '.join(self.missing) or 'nobody left'})"
            )
        if not self.proof_ok:
            parts.append(
                f"bank {self.proof_of!r} has not signed under the signing key it declares "
                "(proof of possession)"
            )
        if self.ignored:
            ignored = "; ".join(f"{bank}: {why}" for bank, why in sorted(self.ignored.items()))
            parts.append(f"signatures not counted: {ignored}")
        return "; ".join(parts)


def _why_not(state: RosterState, bank_id: str, subject: str | None) -> str:
    member = state.member(bank_id)
    if member is None:
        return "not a member"
    if bank_id == subject:
        return "a bank does not approve a change about itself"
    return f"bank is {member.status}"


def _proof_key(state: RosterState, version: RosterVersion) -> str | None:
    """The key the change's subject must sign under, for changes needing its own consent."""
    change = version.change
    if isinstance(change, AdmitBank):
        return change.member.signing_key
    if isinstance(change, RotateBankKeys):
        member = state.member(change.bank_id)
        current = member.signing_key if member is not None else None
        return change.signing_key or current
    return None


def _tally(
    version: RosterVersion, eligible: Sequence[Member], reason: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    message = roster_message(version.consortium_id, version_hash(version))
    keys = {m.bank_id: m.signing_key for m in eligible}
    signed: list[str] = []
    ignored: dict[str, str] = {}
    # One entry per bank id (a mapping); one bank id per key (the charter refuses shared keys).
    for bank_id, signature in sorted(version.signatures.items()):
        if bank_id not in keys:
            ignored[bank_id] = reason.get(bank_id, "not a member")
        elif not verify(keys[bank_id], message, signature):
            ignored[bank_id] = "signature does not verify under its roster key"
        else:
            signed.append(bank_id)
    return signed, ignored


def _genesis_pending(version: RosterVersion) -> Pending:
    if not isinstance(version.change, Genesis):
        raise RosterError("version 0 must carry the founding charter", code="bad_link")
    charter = version.change.charter
    if version.number != 0 or version.previous_hash != ZERO_HASH:
        raise RosterError(
            "a genesis must be number 0 with 64 zeros as previous hash", code="bad_link"
        )
    if charter.consortium_id != version.consortium_id:
        raise RosterError("the charter's consortium id differs from the version's", code="bad_link")
    if len(charter.members) < MIN_BANKS_FLOOR or charter.active_members() != charter.members:
        raise RosterError(
            f"a genesis needs at least {MIN_BANKS_FLOOR} founding members, all active",
            code="bad_change",
        )
    signed, ignored = _tally(version, charter.members, {})
    missing = tuple(m.bank_id for m in charter.members if m.bank_id not in signed)
    return Pending(len(charter.members), tuple(signed), missing, ignored)


def _check_link(state: RosterState, version: RosterVersion) -> None:
    if version.consortium_id != state.consortium_id:
        raise RosterError(
            f"belongs to consortium {version.consortium_id!r}, not {state.consortium_id!r}",
            code="wrong_consortium",
        )
    if version.number != state.version + 1:
        raise RosterError(
            f"number {version.number} does not follow version {state.version} "
            f"(expected {state.version + 1}): reordered, replayed or missing versions",
            code="bad_link",
        )
    if version.previous_hash != state.head_hash:
        raise RosterError(
            f"previous_hash {version.previous_hash[:16]}… is not the hash of version "
            f"{state.version} ({state.head_hash[:16]}…)",
            code="bad_link",
        )


def approvals_needed(state: Charter, subject: str | None) -> tuple[int, tuple[Member, ...]]:
    """How many approvals a change needs, and which members may give them."""
    active = state.active_members()
    eligible = tuple(m for m in active if m.bank_id != subject)
    # Never zero: a change no remaining bank can approve must not pass unsigned.
    return max(1, min(state.rule.required(len(active)), len(eligible))), eligible


def pending_approvals(state: RosterState | None, version: RosterVersion) -> Pending:
    """Who has signed ``version``, who is still needed; ``state`` None for a genesis.

    Raises RosterError when the version cannot become valid whatever is signed (wrong
    link, wrong consortium, a change that does not apply).
    """
    try:
        if state is None:
            return _genesis_pending(version)
        _check_link(state, version)
        change_effect(state, version.change)
        subject = subject_of(version.change)
        needed, eligible = approvals_needed(state, subject)
        reasons = {m.bank_id: _why_not(state, m.bank_id, subject) for m in state.members}
        signatures = dict(version.signatures)
        proof_key = _proof_key(state, version)
        proof_sig = signatures.pop(subject, None) if proof_key is not None and subject else None
        stripped = dataclasses.replace(version, signatures=signatures)
        signed, ignored = _tally(stripped, eligible, reasons)
    except RosterError as exc:
        raise exc.at_version(version.number) from None
    missing = tuple(m.bank_id for m in eligible if m.bank_id not in signed)
    if proof_key is None:
        return Pending(needed, tuple(signed), missing, ignored)
    message = roster_message(version.consortium_id, version_hash(version))
    proof_ok = proof_sig is not None and verify(proof_key, message, proof_sig)
    return Pending(needed, tuple(signed), missing, ignored, subject, proof_ok)


def _verified(version: RosterVersion, pending: Pending) -> None:
    if not pending.complete:
        code = "under_signed" if pending.missing_count else "missing_proof"
        raise RosterError(pending.shortfall(), version=version.number, code=code)


def verify_genesis(genesis: RosterVersion) -> RosterState:
    """The state a genesis founds, once every founding member has signed it."""
    pending = pending_approvals(None, genesis)
    _verified(genesis, pending)
    assert isinstance(genesis.change, Genesis)  # checked by pending_approvals
    return _state(genesis.change.charter, genesis)


def apply(state: RosterState, version: RosterVersion) -> RosterState:
    """The state after ``version``, which must be the next link and carry enough approvals."""
    pending = pending_approvals(state, version)
    _verified(version, pending)
    return _state(change_effect(state, version.change), version)


def _state(charter: Charter, version: RosterVersion) -> RosterState:
    fields = {f.name: getattr(charter, f.name) for f in dataclasses.fields(Charter)}
    return RosterState(**fields, version=version.number, head_hash=version_hash(version))


def verify_chain(genesis: RosterVersion, versions: Iterable[RosterVersion]) -> RosterState:
    """Verify a pinned genesis and every later version in order; the resulting state."""
    state = verify_genesis(genesis)
    for version in versions:
        state = apply(state, version)
    return state


def check_cohort(state: RosterState, entries: Iterable[tuple[str, str]], min_banks: int) -> None:
    """Refuse a round cohort or manifest naming anything the verified roster does not hold.

    Every entry must be an active member under its roster signing key, no bank may appear
    twice (it would weigh double in the sum), and at least max(min_banks, state.min_banks)
    distinct members must take part.
    """
    seen: set[str] = set()
    for bank_id, key in entries:
        member = state.member(bank_id)
        if member is None:
            raise _cohort(state, f"bank {bank_id!r} is not on the roster")
        if not member.is_active:
            raise _cohort(state, f"bank {bank_id!r} is {member.status}")
        if key != member.signing_key:
            raise _cohort(state, f"bank {bank_id!r} is named with a key that is not its roster key")
        if bank_id in seen:
            raise _cohort(state, f"bank {bank_id!r} appears twice")
        seen.add(bank_id)
    floor = max(min_banks, state.min_banks)
    if len(seen) < floor:
        raise _cohort(state, f"only {len(seen)} distinct roster member(s); at least {floor} needed")


def _cohort(state: RosterState, reason: str) -> RosterError:
    return RosterError(f"cohort refused: {reason}", version=state.version, code="cohort")

"""Changes in plain words, for the person at a bank deciding whether to approve one."""

from __future__ import annotations

from governance.changes import (
    AdmitBank,
    Change,
    ChangeMinBanks,
    ChangePrivacyFloor,
    ChangeRule,
    Genesis,
    RegisterKeyEpoch,
    ReinstateBank,
    RetireKeyEpoch,
    RevokeBank,
    RotateBankKeys,
    SuspendBank,
    subject_of,
)
from governance.charter import Charter, RosterState
from governance.encoding import key_hint
from governance.errors import RosterError
from governance.verify import approvals_needed


def _bank(state: Charter, bank_id: str) -> str:
    member = state.member(bank_id)
    return f"bank {bank_id!r}" + (f" ({member.name})" if member is not None else "")


def _because(reason: str) -> str:
    return f" because: {reason}" if reason else ""


def _genesis(charter: Charter) -> str:
    founders = ", ".join(f"{m.bank_id!r} ({m.name})" for m in charter.members)
    return (
        f"Found consortium {charter.consortium_id!r} with {founders}; changes need "
        f"{charter.rule}; min_banks {charter.min_banks}; {charter.privacy}; "
        f"{len(charter.key_epochs)} key epoch(s) in force"
    )


def _rotation(state: Charter, change: RotateBankKeys) -> str:
    parts = []
    if change.signing_key is not None:
        parts.append(f"signing key {key_hint(change.signing_key)}")
    if change.agreement_key is not None:
        parts.append(f"key-agreement key {key_hint(change.agreement_key)}")
    return f"Rotate {_bank(state, change.bank_id)} to new {' and '.join(parts)}"


def _what(change: Change, state: Charter) -> str:
    if isinstance(change, Genesis):
        return _genesis(change.charter)
    if isinstance(change, AdmitBank):
        m = change.member
        return f"Admit bank {m.bank_id!r} ({m.name}) with signing key {key_hint(m.signing_key)}"
    if isinstance(change, SuspendBank | ReinstateBank | RevokeBank):
        verb = {"suspend_bank": "Suspend", "reinstate_bank": "Reinstate", "revoke_bank": "Revoke"}
        return f"{verb[change.kind]} {_bank(state, change.bank_id)}{_because(change.reason)}"
    if isinstance(change, RotateBankKeys):
        return _rotation(state, change)
    if isinstance(change, RegisterKeyEpoch):
        return f"Put key epoch {change.fingerprint[:16]}… in force"
    if isinstance(change, RetireKeyEpoch):
        return f"Retire key epoch {change.fingerprint[:16]}…"
    if isinstance(change, ChangeRule):
        return f"Change the approval rule from {state.rule} to {change.rule}"
    if isinstance(change, ChangeMinBanks):
        return f"Change min_banks from {state.min_banks} to {change.min_banks}"
    if isinstance(change, ChangePrivacyFloor):
        return f"Change the privacy floor from ({state.privacy}) to ({change.privacy})"
    p = change.policy
    return f"Approve round policy {p.name!r} version {p.version} (snapshot sha256 {p.digest[:16]}…)"


def describe(change: Change, state: RosterState | None) -> str:
    """One sentence saying what ``change`` does and how many approvals it needs.

    ``state`` is the verified roster it would apply to; None only for a genesis.
    """
    if isinstance(change, Genesis):
        count = len(change.charter.members)
        return f"{_genesis(change.charter)}; needs all {count} founders' signatures"
    if state is None:
        raise RosterError("only a genesis can be described without a roster", code="bad_change")
    subject = subject_of(change)
    needed, _ = approvals_needed(state, subject)
    text = f"{_what(change, state)}; needs {needed} of {len(state.active_members())} approvals"
    if isinstance(change, AdmitBank) or (
        isinstance(change, RotateBankKeys) and change.signing_key is not None
    ):
        text += f", plus a signature from bank {subject!r} under its new signing key"
    elif isinstance(change, RotateBankKeys):
        text += f", plus a signature from bank {subject!r} itself"
    return text

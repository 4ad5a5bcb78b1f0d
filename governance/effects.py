"""What a change does to the charter, refused when it does not fit the current roster."""

from __future__ import annotations

import dataclasses

from governance.changes import (
    AdmitBank,
    ApprovePolicy,
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
)
from governance.charter import Charter, Member, MemberStatus
from governance.errors import RosterError


def _refuse(reason: str) -> RosterError:
    return RosterError(reason, code="bad_change")


def _existing(charter: Charter, bank_id: str) -> Member:
    member = charter.member(bank_id)
    if member is None:
        raise _refuse(f"bank {bank_id!r} is not a member of the roster")
    return member


def _with_member(charter: Charter, new: Member) -> Charter:
    members = tuple(new if m.bank_id == new.bank_id else m for m in charter.members)
    return dataclasses.replace(charter, members=members)


def _key_free(charter: Charter, key: str, attr: str, owner: str) -> None:
    """A key may belong to one member only, else one bank could count as two."""
    for m in charter.members:
        if getattr(m, attr) == key and m.bank_id != owner:
            raise _refuse(f"that {attr.replace('_', ' ')} already belongs to bank {m.bank_id!r}")


def _admit(charter: Charter, change: AdmitBank) -> Charter:
    new = change.member
    if charter.member(new.bank_id) is not None:
        # Ids are never reused, so a revoked bank's history cannot be confused with a new one.
        raise _refuse(f"bank {new.bank_id!r} is already on the roster (ids are never reused)")
    _key_free(charter, new.signing_key, "signing_key", new.bank_id)
    _key_free(charter, new.agreement_key, "agreement_key", new.bank_id)
    return dataclasses.replace(charter, members=(*charter.members, new))


def _set_status(
    charter: Charter, bank_id: str, allowed: set[MemberStatus], to: MemberStatus
) -> Charter:
    member = _existing(charter, bank_id)
    if member.status not in allowed:
        raise _refuse(f"bank {bank_id!r} is {member.status}; it cannot become {to}")
    return _with_member(charter, dataclasses.replace(member, status=to))


def _rotate(charter: Charter, change: RotateBankKeys) -> Charter:
    member = _existing(charter, change.bank_id)
    if member.status is MemberStatus.REVOKED:
        raise _refuse(f"bank {change.bank_id!r} is revoked; its keys cannot be rotated")
    new = member
    if change.signing_key is not None:
        if change.signing_key == member.signing_key:
            raise _refuse("rotate_bank_keys: the new signing key is the current one")
        _key_free(charter, change.signing_key, "signing_key", member.bank_id)
        new = dataclasses.replace(new, signing_key=change.signing_key)
    if change.agreement_key is not None:
        if change.agreement_key == member.agreement_key:
            raise _refuse("rotate_bank_keys: the new agreement key is the current one")
        _key_free(charter, change.agreement_key, "agreement_key", member.bank_id)
        new = dataclasses.replace(new, agreement_key=change.agreement_key)
    return _with_member(charter, new)


def _epochs(charter: Charter, fingerprint: str, *, add: bool) -> Charter:
    present = fingerprint in charter.key_epochs
    if add and present:
        raise _refuse(f"key epoch {fingerprint[:16]}… is already in force")
    if not add and not present:
        raise _refuse(f"key epoch {fingerprint[:16]}… is not in force")
    epochs = (
        (*charter.key_epochs, fingerprint)
        if add
        else tuple(e for e in charter.key_epochs if e != fingerprint)
    )
    return dataclasses.replace(charter, key_epochs=epochs)


def _approve_policy(charter: Charter, change: ApprovePolicy) -> Charter:
    policy = change.policy
    if any((p.name, p.version) == (policy.name, policy.version) for p in charter.policies):
        # A policy version is pinned once: a second digest for it would be a silent swap.
        raise _refuse(f"policy {policy.name!r} version {policy.version} is already approved")
    return dataclasses.replace(charter, policies=(*charter.policies, policy))


def _unchanged(old: object, new: object, what: str) -> None:
    if old == new:
        raise _refuse(f"{what} is already {new}; the change would do nothing")


def _membership_effect(charter: Charter, change: Change) -> Charter | None:
    """The effect of a change about one bank, or None when ``change`` is about something else."""
    active, suspended = MemberStatus.ACTIVE, MemberStatus.SUSPENDED
    if isinstance(change, AdmitBank):
        return _admit(charter, change)
    if isinstance(change, SuspendBank):
        return _set_status(charter, change.bank_id, {active}, suspended)
    if isinstance(change, ReinstateBank):
        return _set_status(charter, change.bank_id, {suspended}, active)
    if isinstance(change, RevokeBank):
        return _set_status(charter, change.bank_id, {active, suspended}, MemberStatus.REVOKED)
    if isinstance(change, RotateBankKeys):
        return _rotate(charter, change)
    return None


def _settings_effect(charter: Charter, change: Change) -> Charter:
    """The effect of a change to the charter's rule, floors, key epochs or policies."""
    if isinstance(change, RegisterKeyEpoch | RetireKeyEpoch):
        return _epochs(charter, change.fingerprint, add=isinstance(change, RegisterKeyEpoch))
    if isinstance(change, ChangeRule):
        _unchanged(charter.rule, change.rule, "the rule")
        return dataclasses.replace(charter, rule=change.rule)
    if isinstance(change, ChangeMinBanks):
        _unchanged(charter.min_banks, change.min_banks, "min_banks")
        return dataclasses.replace(charter, min_banks=change.min_banks)
    if isinstance(change, ChangePrivacyFloor):
        _unchanged(charter.privacy, change.privacy, "the privacy floor")
        return dataclasses.replace(charter, privacy=change.privacy)
    if isinstance(change, ApprovePolicy):
        return _approve_policy(charter, change)
    raise _refuse(f"a {type(change).__name__} cannot follow the genesis")


def change_effect(charter: Charter, change: Change) -> Charter:
    """The charter after ``change``; RosterError (code ``bad_change``) when it does not apply."""
    if isinstance(change, Genesis):
        raise _refuse("a genesis charter can only be version 0")
    after = _membership_effect(charter, change)
    return after if after is not None else _settings_effect(charter, change)

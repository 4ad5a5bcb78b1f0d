"""Offline check of a report's roster section: the banks' signed chain and their objections.

Pure (``governance`` and the standard library): ``python -m audit.verify`` calls it with
no database. Every version in force is re-verified as a bank node would verify it
(genesis signed by every founder, each later version by the rule's number of members
under their roster keys, hashes linked), and every objection's signature under the roster
key its bank held when the portal received it. The first problem is raised as
:class:`RosterProblem` naming the version or objection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from governance import (
    Objection,
    RosterError,
    RosterState,
    RosterVersion,
    apply,
    parse_version_json,
    pending_approvals,
    verify_genesis,
    verify_objection,
    version_hash,
)

SECTION_LISTS = ("versions", "proposals", "objections")
# Added with disputed rounds (``audit.disputes``) and the evaluation gate (``audit.gates``);
# a report from before has none of them.
OPTIONAL_LISTS = ("clearances", "disputes", "verdicts", "gates")


class RosterProblem(Exception):
    """Something in the roster section does not verify; the message names what."""


def roster_shape_problem(section: Any) -> str | None:
    """Why ``section`` is not a roster section at all, or None (old reports have none)."""
    if section is None:
        return None
    if not isinstance(section, dict):
        return "roster: expected an object"
    for name in SECTION_LISTS + OPTIONAL_LISTS:
        items = section.get(name, [] if name in OPTIONAL_LISTS else None)
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            return f"roster: {name} is missing or not a list of objects"
    return None


def load_pinned_genesis(path: str) -> RosterVersion:
    """The genesis a bank handed over out of band; ValueError says why it is unusable."""
    try:
        return parse_version_json(Path(path).read_bytes())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the genesis ({exc.strerror or exc})") from exc
    except RosterError as exc:
        raise ValueError(f"{path}: not a roster genesis ({exc})") from exc


def _parsed(entry: Mapping[str, Any], position: int) -> RosterVersion:
    """The signed version of one listed entry, which must agree with what the entry says."""
    label = f"roster version {entry.get('number', f'at position {position}')}"
    try:
        version = RosterVersion.from_dict(entry.get("version"))
    except RosterError as exc:
        raise RosterProblem(f"{label}: not a signed roster version ({exc.reason})") from None
    listed = {
        "number": version.number,
        "version_hash": version_hash(version),
        "previous_hash": version.previous_hash,
        "kind": version.change.kind,
    }
    for name, value in listed.items():
        if entry.get(name) != value:
            raise RosterProblem(f"{label}: the listed {name} differs from the signed version")
    return version


def _verified(state: RosterState | None, version: RosterVersion) -> RosterState:
    """The state after ``version``; every signature it carries must count, none forged."""
    try:
        pending = pending_approvals(state, version)
        if pending.ignored:
            ignored = "; ".join(f"{bank}: {why}" for bank, why in sorted(pending.ignored.items()))
            raise RosterError(f"carries signatures that do not count ({ignored})")
        return verify_genesis(version) if state is None else apply(state, version)
    except RosterError as exc:
        raise RosterProblem(str(exc.at_version(version.number))) from None


def _chain(versions: Sequence[RosterVersion]) -> list[RosterState]:
    """Each version's resulting state, in order; what ``governance.verify_chain`` checks."""
    states: list[RosterState] = []
    for version in versions:
        states.append(_verified(states[-1] if states else None, version))
    return states


def _pinned(genesis: RosterVersion, pinned: RosterVersion | None) -> None:
    if pinned is not None and version_hash(pinned) != version_hash(genesis):
        raise RosterProblem(
            f"roster version {genesis.number}: the report's genesis "
            f"(hash {version_hash(genesis)[:16]}…) is not the pinned genesis "
            f"(hash {version_hash(pinned)[:16]}…)"
        )


def _moment(value: Any, where: str) -> datetime:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise RosterProblem(f"{where}: {value!r} is not an ISO date and time") from None


def _check_in_force_then(
    entry: Mapping[str, Any], versions: Sequence[Mapping[str, Any]], where: str
) -> int:
    """The roster version the objection names must be the one in force when it arrived."""
    number = entry.get("roster_version")
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < len(versions):
        raise RosterError(f"names roster version {number!r}, which the report does not hold")
    received = _moment(entry.get("received_at"), where)
    if _moment(versions[number].get("in_force_at"), where) > received or (
        number + 1 < len(versions)
        and _moment(versions[number + 1].get("in_force_at"), where) <= received
    ):
        raise RosterError(f"roster version {number} was not the one in force when it arrived")
    return number


def _check_objection(
    entry: Mapping[str, Any], states: Sequence[RosterState], versions: Sequence[Any], where: str
) -> None:
    objection = Objection.from_dict(entry.get("body"))
    listed = {
        "bank": objection.bank_id,
        "round": objection.round_number,
        "reason_code": objection.reason_code,
        "message": objection.message,
    }
    for name, value in listed.items():
        if entry.get(name) != value:
            raise RosterError(f"the listed {name} differs from the signed body")
    number = _check_in_force_then(entry, versions, where)
    state = states[number]
    member = state.member(objection.bank_id)
    if member is None or objection.consortium_id != state.consortium_id:
        raise RosterError(f"bank {objection.bank_id!r} is not on roster version {number}")
    signature = entry.get("signature")
    if not isinstance(signature, str) or not verify_objection(
        objection, signature, member.signing_key
    ):
        raise RosterError(
            f"the signature does not verify under bank {objection.bank_id!r}'s roster key "
            f"of version {number}"
        )


def _objections(section: Mapping[str, Any], states: Sequence[RosterState]) -> int:
    for i, entry in enumerate(section["objections"], start=1):
        where = f"objection {i} (bank {entry.get('bank')}, round {entry.get('round')})"
        try:
            _check_objection(entry, states, section["versions"], where)
        except RosterError as exc:
            raise RosterProblem(f"{where}: {exc.reason}") from None
    return len(section["objections"])


def check_roster(section: Mapping[str, Any] | None, pinned: RosterVersion | None) -> str:
    """Verify the roster section (None: a report from before the roster); a summary line."""
    if section is None or not section["versions"]:
        if pinned is not None:
            raise RosterProblem("a genesis was pinned but the report holds no roster in force")
        if section is not None and section["objections"]:
            raise RosterProblem("the report lists objections but no roster in force")
        return "roster: none in force in this report"
    versions = [_parsed(entry, i) for i, entry in enumerate(section["versions"])]
    _pinned(versions[0], pinned)
    states = _chain(versions)
    if section.get("consortium_id") != states[0].consortium_id:
        raise RosterProblem("roster: consortium_id differs from the genesis charter's")
    for i, entry in enumerate(section["proposals"]):
        _parsed(entry, i)  # not in force: only its listing is checked against its body
    objections = _objections(section, states)
    pinned_text = ", genesis equals the pinned one" if pinned is not None else ""
    return (
        f"roster: versions 0 to {states[-1].version} signed and linked{pinned_text}; "
        f"{len(section['proposals'])} not in force; objection signatures valid: {objections}"
    )

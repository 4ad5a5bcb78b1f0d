"""A report's disputed rounds, derived from its signed objections and clearances (pure).

The portal writes the list when it builds a report and ``python -m audit.verify``
recomputes it from the same signatures, so a report cannot leave out a dispute its
objections establish nor list one they do not. The roster used (threshold, keys) is the
last version in force in the report's roster section; objections are read both from the
section and from the report's ``objection.recorded`` trail events, so a row the operator
deleted from the objections table still counts while its hash-chained event is there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from audit.roster_verify import RosterProblem
from governance import (
    Objection,
    RosterError,
    RosterState,
    RosterVersion,
    dispute_of,
    verify_chain,
)


def section_state(section: Mapping[str, Any]) -> RosterState | None:
    """The roster after the section's last version in force; None without one or if invalid.

    An invalid chain is reported by ``audit.roster_verify``; here it only means no disputes.
    """
    try:
        versions = [RosterVersion.from_dict(v.get("version")) for v in section["versions"]]
        return verify_chain(versions[0], versions[1:]) if versions else None
    except (RosterError, AttributeError, TypeError):
        return None


def _signed(body: object, signature: object) -> tuple[Objection, str] | None:
    try:
        return Objection.from_dict(body), str(signature)
    except RosterError:
        return None


def _objections(
    section: Mapping[str, Any], events: Iterable[Mapping[str, Any]]
) -> dict[int, list[tuple[Objection, str]]]:
    """Every signed objection in the section or the trail events, by round, each once."""
    found: dict[str, tuple[Objection, str]] = {}
    for entry in section.get("objections", []):
        if (item := _signed(entry.get("body"), entry.get("signature"))) is not None:
            found[item[1]] = item
    for event in events:
        data = event.get("data")
        if event.get("action") == "objection.recorded" and isinstance(data, dict):
            body = {k: v for k, v in data.items() if k != "signature"}
            if (item := _signed(body, data.get("signature"))) is not None:
                found.setdefault(item[1], item)
    by_round: dict[int, list[tuple[Objection, str]]] = {}
    for objection, signature in found.values():
        if objection.round_number > 0:  # 0: an objection to a roster version
            by_round.setdefault(objection.round_number, []).append((objection, signature))
    return by_round


def _clearances(section: Mapping[str, Any]) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {}
    for entry in section.get("clearances", []):
        number, bank = entry.get("round"), entry.get("bank")
        if isinstance(number, int) and isinstance(bank, str):
            out.setdefault(number, {})[bank] = str(entry.get("signature"))
    return out


def section_disputes(
    section: Mapping[str, Any] | None, events: Iterable[Mapping[str, Any]] = ()
) -> list[dict[str, Any]]:
    """One record per round enough banks objected to (disputed or cleared), by round."""
    if not section:
        return []
    state = section_state(section)
    if state is None:
        return []
    clearances = _clearances(section)
    records = []
    for number, signed in sorted(_objections(section, events).items()):
        dispute = dispute_of(state, number, signed, clearances.get(number, {}))
        if dispute.objected:
            records.append(dispute.as_dict())
    return records


def _differences(listed: list[Any], expected: list[dict[str, Any]]) -> str:
    by_round = {r.get("round"): r for r in listed if isinstance(r, dict)}
    for record in expected:
        shown = by_round.pop(record["round"], None)
        if shown is None:
            return f"round {record['round']} is disputed by {record['objectors']} but not listed"
        if shown != record:
            return f"round {record['round']} is listed as {shown}, the signatures give {record}"
    extra = sorted(str(n) for n in by_round)
    return f"round(s) {', '.join(extra)} listed as disputed without enough signed objections"


def check_disputes(section: Mapping[str, Any] | None, events: Iterable[Mapping[str, Any]]) -> str:
    """The report's dispute list must be exactly what its signatures establish; a summary.

    Raises ``RosterProblem`` naming the first round listed wrongly or left out.
    """
    expected = section_disputes(section, events)
    listed = (section or {}).get("disputes", [])  # reports from before disputes list none
    if listed != expected:
        raise RosterProblem(f"disputes: {_differences(listed or [], expected)}")
    disputed = [str(r["round"]) for r in expected if r["disputed"]]
    cleared = [str(r["round"]) for r in expected if r["cleared"]]
    return (
        f"disputes: rounds disputed {', '.join(disputed) or 'none'}; "
        f"cleared by the banks {', '.join(cleared) or 'none'} (from the signed objections "
        "and clearances)"
    )

"""A report's gate decisions, derived from its signed verdicts (pure).

The portal lists one record per published evaluation round in the report, and
``python -m audit.verify`` recomputes the list from the same signatures under the roster
in the report's roster section (``governance.verdict_check.gate_tally``, the portal's own
count), so a report can neither invent an adoption nor hide a rejection. Verdicts are
read both from the section and from the report's ``gate.verdict_recorded`` trail events,
so a verdict row deleted from the portal's table still counts while its event is there;
a ``round.gate_decided`` event must agree with what the signatures give.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from audit.disputes import section_state
from audit.roster_verify import RosterProblem
from governance import RosterError
from governance.verdict import GateVerdict
from governance.verdict_check import gate_tally

DECIDED = ("adopt", "reject")


def _signed(body: object, signature: object) -> tuple[GateVerdict, str] | None:
    try:
        return GateVerdict.from_dict(body), str(signature)
    except (RosterError, TypeError):
        return None


def _verdicts(
    section: Mapping[str, Any], events: Iterable[Mapping[str, Any]]
) -> dict[int, list[tuple[GateVerdict, str]]]:
    """Every signed verdict in the section or the trail events, by round, each once."""
    found: dict[str, tuple[GateVerdict, str]] = {}
    for entry in section.get("verdicts", []):
        if (item := _signed(entry.get("verdict"), entry.get("signature"))) is not None:
            found[item[1]] = item
    for event in events:
        data = event.get("data")
        if event.get("action") == "gate.verdict_recorded" and isinstance(data, dict):
            if (item := _signed(data.get("verdict"), data.get("signature"))) is not None:
                found.setdefault(item[1], item)
    by_round: dict[int, list[tuple[GateVerdict, str]]] = {}
    for verdict, signature in found.values():
        by_round.setdefault(verdict.round_number, []).append((verdict, signature))
    return by_round


def _evaluations(rounds: Iterable[Mapping[str, Any]]) -> list[tuple[int, int, str]]:
    """``(round, candidate, aggregate digest)`` of each published evaluation round."""
    out = []
    for rnd in rounds:
        number, candidate = rnd.get("number"), rnd.get("candidate_round")
        digest = rnd.get("aggregate_digest")
        published = rnd.get("kind") == "evaluation" and rnd.get("state") == "published"
        if published and isinstance(number, int) and isinstance(candidate, int):
            out.append((number, candidate, digest if isinstance(digest, str) else ""))
    return sorted(out)


def section_gates(
    section: Mapping[str, Any] | None,
    rounds: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """One record per published evaluation round of the report: counted verdicts, decision."""
    state = section_state(section) if section else None
    if section is None or state is None:
        return []
    events = list(events)
    signed = _verdicts(section, events)
    return [
        gate_tally(
            state,
            signed.get(number, []),
            round_number=number,
            candidate_round=candidate,
            aggregate_digest=digest,
        ).as_dict()
        for number, candidate, digest in _evaluations(rounds)
    ]


def _decided_events(events: Iterable[Mapping[str, Any]]) -> list[tuple[Any, Any]]:
    return [
        (e["data"].get("round"), e["data"].get("decision"))
        for e in events
        if e.get("action") == "round.gate_decided" and isinstance(e.get("data"), dict)
    ]


def check_gates(
    section: Mapping[str, Any] | None,
    rounds: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
) -> str:
    """The report's gate list must be exactly what its verdict signatures give; a summary.

    Raises ``RosterProblem`` naming the first evaluation round listed wrongly, or a
    ``round.gate_decided`` event whose adopt/reject the signatures do not give.
    """
    events = list(events)
    expected = section_gates(section, rounds, events)
    listed = (section or {}).get("gates", [])  # reports from before the gate list none
    if listed != expected:
        shown = {g.get("round"): g for g in listed or [] if isinstance(g, dict)}
        for record in expected:
            if shown.get(record["round"]) != record:
                raise RosterProblem(
                    f"gates: round {record['round']} is listed as {shown.get(record['round'])}, "
                    f"its signed verdicts give {record}"
                )
        raise RosterProblem("gates: an evaluation round is listed that the report cannot check")
    decisions = {g["round"]: g["decision"] for g in expected}
    for number, claimed in _decided_events(events):
        if claimed in DECIDED and decisions.get(number) != claimed:
            raise RosterProblem(
                f"gates: the trail says round {number} decided {claimed!r}; its signed verdicts "
                f"give {decisions.get(number) or 'no decision'}"
            )
    words = [
        f"round {g['round']} {g['decision'] or 'undecided'} for candidate {g['candidate_round']}"
        for g in expected
    ]
    return f"gates: {'; '.join(words) or 'none'} (from the signed verdicts)"

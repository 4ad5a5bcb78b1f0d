"""The consortium at a glance: its state and why, members, roster, key epochs, policies, rounds."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from consortium.governance import selectors as roster
from consortium.members.selectors import bank_list
from consortium.rounds import selectors
from consortium.rounds.models import Round
from consortium.rounds.selectors_state import consortium_state


def state_lines() -> list[str]:
    """The state derived afresh, then each reason with its detail and the way forward."""
    state = consortium_state()
    lines = [f"consortium {state.sentence}"]
    for reason in state.reasons:
        lines += [
            f"  - {reason.summary} [{reason.code}]",
            f"    {reason.detail}",
            f"    way forward: {reason.way_forward}",
        ]
    return lines


def member_lines() -> list[str]:
    banks = list(bank_list())
    lines = [f"members ({len(banks)}):"]
    for bank in banks:
        key = "signing key registered" if bank.signing_public_key else "no signing key yet"
        lines.append(f"  {bank.slug:<16} {bank.status:<9} {bank.name} ({key})")
    return lines


def roster_lines() -> list[str]:
    state = roster.roster_state()
    if state is None:
        head = "roster: no genesis in force (the banks have not founded the consortium yet)"
    else:
        head = (
            f"roster: consortium {state.consortium_id!r} version {state.version} in force, "
            f"{len(state.active_members())} active member(s), min_banks {state.min_banks}"
        )
    pending = [
        f"  pending version {row.number}: {row.summary}; "
        f"signed by {', '.join(s.bank_id for s in row.signatures.all()) or 'nobody yet'}"
        for row in roster.roster_pending()
    ]
    return [head, *pending]


def key_epoch_lines() -> list[str]:
    epochs = list(selectors.key_epoch_list())
    lines = [f"key epochs ({len(epochs)}):"]
    for epoch in epochs:
        state = "active" if epoch.active else "retired"
        in_force = roster.roster_key_epoch_in_force(epoch.fingerprint)
        lines.append(
            f"  {epoch.number:>3} {state:<8} {epoch.fingerprint}"
            + ("" if in_force else " (not in force in the roster)")
        )
    return lines


def policy_lines() -> list[str]:
    policies = list(selectors.policy_table())
    lines = [f"policies ({len(policies)}):"]
    for policy in policies:
        approved = roster.policy_refusal(policy) is None
        lines.append(
            f"  {policy.name} v{policy.version:<3} {'active' if policy.active else 'inactive':<8} "
            f"sha256 {roster.policy_digest(policy)[:16]}… "
            f"{'approved' if approved else 'not approved by the roster'}, "
            f"{getattr(policy, 'training_count', 0)} of {policy.max_rounds} training round(s) "
            f"published, {getattr(policy, 'round_count', 0)} round(s) in all"
        )
    return lines


def _round_line(rnd: Round) -> str:
    closed = rnd.closed_at.isoformat(timespec="seconds") if rnd.closed_at else "-"
    why = f" ({rnd.failure_reason})" if rnd.failure_reason else ""
    return (
        f"  {rnd.number:>4} {rnd.kind:<10} {rnd.state:<11} {rnd.policy} "
        f"{getattr(rnd, 'submission_count', 0)} update(s), closed {closed}{why}"
    )


def round_lines(last: int) -> list[str]:
    flight = selectors.round_in_flight()
    head = (
        f"round in flight: {flight.number} ({flight.kind}, {flight.state}, deadline "
        f"{flight.deadline_at.isoformat(timespec='seconds')})"
        if flight is not None
        else "round in flight: none"
    )
    rounds = list(selectors.round_table()[:last])
    return [head, f"last {len(rounds)} round(s):", *map(_round_line, rounds)]


class Command(BaseCommand):
    help = (
        "Show the consortium's state (running, waiting or halted, and why), members, the "
        "roster in force, key epochs, policies and the latest rounds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rounds", type=int, default=5, help="how many recent rounds")

    def handle(self, *args: Any, rounds: int, **options: Any) -> None:
        sections = [
            state_lines(),
            member_lines(),
            roster_lines(),
            key_epoch_lines(),
            policy_lines(),
        ]
        for lines in [*sections, round_lines(max(0, rounds))]:
            self.stdout.write("\n".join(lines))

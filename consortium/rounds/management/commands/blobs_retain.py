"""Delete the ciphertexts of old rounds (the retention policy), with one audit event."""

from __future__ import annotations

from argparse import ArgumentTypeError
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from consortium.operator_cli import cli_actor, refusals
from consortium.rounds.selectors_retention import RetentionPlan
from consortium.rounds.services.retention import blobs_retain


def _positive(text: str) -> int:
    """argparse type: a whole number >= 1, with a message that says why."""
    try:
        value = int(text)
    except ValueError:
        raise ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise ArgumentTypeError(
            f"must be at least 1, not {value}: the newest published round is the base the "
            "next round builds on"
        )
    return value


class Command(BaseCommand):
    help = (
        "Delete the encrypted updates and aggregates of closed rounds older than the newest "
        "--keep-published published rounds, except rounds a kept or current round builds on "
        "(base, statistics, candidate). Writes one audit event (blobs.retained) per run that "
        "deletes anything."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--keep-published", type=_positive, required=True)
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would go; delete nothing."
        )
        parser.add_argument(
            "--actor", default="", help="Who the audit event names (default: the OS user)."
        )

    def handle(self, *args: Any, keep_published: int, dry_run: bool, actor: str, **_: Any) -> None:
        who = f"cli:{actor}:blobs_retain" if actor else cli_actor("blobs_retain")
        with refusals("no blob deleted"):
            plan = blobs_retain(keep_published=keep_published, actor=who, dry_run=dry_run)
        self.stdout.write(_summary(plan, dry_run))


def _summary(plan: RetentionPlan, dry_run: bool) -> str:
    if plan.oldest_kept is None:
        return f"fewer than {plan.keep_published} published rounds: nothing to delete"
    verb = "would delete" if dry_run else "deleted"
    kept = f"; kept as a base: {plan.kept_as_base}" if plan.kept_as_base else ""
    numbers = ", ".join(str(r.number) for r in plan.rounds) or "none"
    return (
        f"{verb} {plan.blob_count} blobs ({plan.size} bytes) of rounds {numbers} "
        f"(keeping round {plan.oldest_kept} and newer){kept}"
    )

"""Propose a roster change (or a drafted genesis) from a JSON file, for the banks to sign."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consortium.governance.services import roster_change_propose, roster_genesis_propose
from consortium.operator_cli import cli_actor, json_file, refusals

FIX = (
    'write one change such as {"kind": "approve_policy", "policy": {"name": ..., "version": '
    '..., "digest": ...}} (kinds and fields: docs/governance.md), or a draft genesis'
)


class Command(BaseCommand):
    help = (
        "Propose the change in --file (a JSON object with a 'kind', see docs/governance.md) as "
        "the next roster version, or a draft genesis written by genesis_draft. It takes "
        "effect once enough member banks sign it (`bank-node roster approve N`)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--file", required=True, help="change.json or genesis-draft.json")

    def handle(self, *args: Any, file: str, **options: Any) -> None:
        body = json_file(file, "a roster change", FIX)
        if not isinstance(body, dict):
            raise CommandError(f"{file}: a roster change is a JSON object; {FIX}")
        actor = cli_actor("roster_propose")
        with refusals(f"{file}: not proposed"):
            if "change" in body:  # a whole version: only a genesis is proposed that way
                row = roster_genesis_propose(version_json=body, actor=actor)
            else:
                row = roster_change_propose(change=body, actor=actor)
        self.stdout.write(
            f"roster version {row.number} proposed: {row.summary}; the banks sign it with "
            f"`bank-node roster approve {row.number} --config node.toml`"
            if row.number
            else f"genesis proposed: {row.summary}; each founder signs it with "
            "`bank-node roster sign-genesis FILE --config node.toml --post`"
        )

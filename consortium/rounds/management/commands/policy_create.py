"""Create the next version of a round policy from a TOML or YAML file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consortium.api.errors import ApplicationError
from consortium.governance.selectors import policy_digest
from consortium.operator_cli import cli_actor, refusals
from consortium.rounds.policy_file import (
    PolicyFile,
    PolicyFileError,
    field_defaults,
    policy_file_read,
)
from consortium.rounds.services import policy_activate, policy_create


class Command(BaseCommand):
    help = (
        "Create the next version of the policy named in --file (TOML or YAML): name, plus any "
        "of these fields, each shown with the default it takes when left out: "
        + "; ".join(f"{k} = {json.dumps(v)}" for k, v in field_defaults().items())
        + ". Once a roster is in force it cannot be activated until the banks approve its "
        "digest, which this command prints."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--file", required=True, help="policy.toml, policy.yaml or .yml")
        parser.add_argument(
            "--activate", action="store_true", help="make it the policy the scheduler follows"
        )

    def handle(self, *args: Any, file: str, activate: bool, **options: Any) -> None:
        try:
            parsed = policy_file_read(Path(file))
        except PolicyFileError as exc:
            raise CommandError(str(exc)) from None
        policy = self._create(parsed)
        self.stdout.write(
            f"policy {policy.name} v{policy.version} created; "
            f"snapshot sha256 {policy_digest(policy)}"
        )
        if activate:
            # Activated on its own so that a roster refusal leaves the new version in place
            # for the banks to approve, instead of rolling its creation back.
            with refusals(f"policy {policy.name} v{policy.version} created but not activated"):
                policy_activate(policy=policy, actor=cli_actor("policy_create"))
            self.stdout.write(f"policy {policy.name} v{policy.version} is active")

    def _create(self, parsed: PolicyFile) -> Any:
        try:
            with refusals(f"{parsed.path}: policy {parsed.name!r} not created"):
                return policy_create(
                    name=parsed.name,
                    actor=cli_actor("policy_create"),
                    **parsed.fields,
                )
        except CommandError as exc:
            raise CommandError(self._located(parsed, exc)) from None

    @staticmethod
    def _located(parsed: PolicyFile, exc: CommandError) -> str:
        """The refusal with the line of the first field it names, where the file sets it."""
        cause = exc.__context__
        names = cause.extra.get("fields", {}) if isinstance(cause, ApplicationError) else {}
        for name in names:
            where = parsed.where("deadline_seconds" if name == "deadline" else name)
            if where != str(parsed.path):
                return f"{exc} (set at {where})"
        return str(exc)

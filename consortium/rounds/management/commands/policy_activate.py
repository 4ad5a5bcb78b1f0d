"""Make one policy version the one the scheduler follows."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consortium.operator_cli import cli_actor, refusals
from consortium.rounds.selectors import policy_get_by_version
from consortium.rounds.services import policy_activate


class Command(BaseCommand):
    help = (
        "Activate policy NAME version VERSION (every other version is deactivated). Once a "
        "roster is in force, only a version whose digest the banks approved can be activated."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("version", type=int)

    def handle(self, *args: Any, name: str, version: int, **options: Any) -> None:
        policy = policy_get_by_version(name, version)
        if policy is None:
            raise CommandError(
                f"policy {name!r} v{version} does not exist; `manage.py consortium_status` "
                "lists the policies"
            )
        with refusals(f"policy {name} v{version} not activated"):
            policy_activate(policy=policy, actor=cli_actor("policy_activate"))
        self.stdout.write(f"policy {name} v{version} is active")

"""Walk the audit chain in the database and name the first event that does not hold."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.selectors import audit_chain_verify


class Command(BaseCommand):
    help = (
        "Verify every event hash and link, the head row and every signed checkpoint. "
        "Exit status 1 names the first event modified, deleted or inserted."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        check = audit_chain_verify()
        if options["json"]:
            self.stdout.write(json.dumps(check.as_dict(), indent=2))
        if not check.ok:
            raise CommandError(
                f"audit trail FAILED at event #{check.first_bad_seq} ({check.problem}): "
                f"{check.reason}",
                returncode=1,
            )
        if not options["json"]:
            self.stdout.write(
                f"audit trail intact: {check.events} events, head #{check.head_seq} "
                f"{check.head_hash}, {check.checkpoints} signed checkpoints verified"
            )

"""Write a roster version in force with every signature: the genesis file each bank pins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consortium.governance import selectors
from consortium.governance.models import VersionStatus


class Command(BaseCommand):
    help = (
        "Write roster version NUMBER (default 0, the genesis) with its signatures to --out; "
        "each bank checks every founder's signature and pins it as genesis_file in node.toml."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("number", type=int, nargs="?", default=0, help="default 0")
        parser.add_argument("--out", required=True, help="e.g. genesis.json")

    def handle(self, *args: Any, number: int, out: str, **options: Any) -> None:
        row = selectors.roster_version_get(number)
        if row is None:
            raise CommandError(f"roster version {number} does not exist or was withdrawn")
        if row.status != VersionStatus.IN_FORCE:
            pending = selectors.version_pending(row, selectors.roster_state())
            missing = pending if isinstance(pending, str) else ", ".join(pending.missing)
            raise CommandError(
                f"roster version {number} is still {row.status} (missing: {missing}); "
                "export it once the banks have signed it"
            )
        text = json.dumps(selectors.signed_version(row).to_dict(), indent=2, sort_keys=True)
        try:
            Path(out).write_text(text + "\n")
        except OSError as exc:
            raise CommandError(f"{out}: cannot write: {exc.strerror}") from None
        self.stdout.write(f"roster version {number} ({row.summary}) written to {out}")

"""Export the audit report for some rounds or a period as PDF, CSV, JSON or evidence pack."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.render import EXPORT_FORMATS
from audit.report import SelectionError
from consortium.audit_api.selectors import selection_parse
from consortium.audit_api.services import audit_report_export


class Command(BaseCommand):
    help = (
        "Write the audit report (signed JSON, CSV, PDF, or zip: the evidence pack of all "
        "three with a signed manifest) for --rounds or --since/--until (default: the whole "
        "trail) as of event --at (default: now). The export is recorded after the snapshot."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--format", choices=sorted(EXPORT_FORMATS), default="json")
        parser.add_argument(
            "--at", type=int, help="the snapshot's event number (the same gives the same report)"
        )
        parser.add_argument("--out", required=True, help="file to write; '-' for stdout")
        parser.add_argument("--rounds", help="round numbers, e.g. 1,2,3")
        parser.add_argument("--since", help="date or ISO datetime (UTC)")
        parser.add_argument("--until", help="date (inclusive) or ISO datetime (exclusive)")

    def handle(self, *args: Any, **options: Any) -> None:
        out = options["out"]
        if out != "-" and not Path(out).resolve().parent.is_dir():
            raise CommandError(f"--out {out}: the directory does not exist")
        try:
            selection = selection_parse(
                rounds=options["rounds"], since=options["since"], until=options["until"]
            )
            export = audit_report_export(
                selection=selection,
                fmt=options["format"],
                actor=f"cli:{_os_user()}",
                at=options["at"],
            )
        except SelectionError as exc:
            raise CommandError(str(exc)) from exc
        if out == "-":
            sys.stdout.buffer.write(export.content)
            sys.stdout.buffer.flush()
            return
        try:
            Path(out).write_bytes(export.content)
        except OSError as exc:
            raise CommandError(f"--out {out}: {exc.strerror}") from exc
        chain = export.report["chain"]
        self.stderr.write(
            f"wrote {out} ({len(export.content)} bytes): events #{chain['first_seq']} to "
            f"#{chain['last_seq']}, {len(export.report['rounds'])} rounds, report SHA-256 "
            f"{export.report['signature']['body_sha256']}"
        )


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())

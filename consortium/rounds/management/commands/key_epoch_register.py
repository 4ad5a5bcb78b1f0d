"""Register the consortium's public CKKS context (a key epoch) from the file keygen wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consortium.operator_cli import cli_actor, file_bytes, json_file, refusals
from consortium.rounds.services import key_epoch_register

KEYGEN_FIX = "pass the consortium.pub that `bank-node keygen` wrote (never consortium.secret)"
PARAMS_NAME = "ckks_params.json"


class Command(BaseCommand):
    help = (
        "Register a key epoch from the public context file (consortium.pub) and its CKKS "
        "parameters (ckks_params.json beside it, written by `bank-node keygen`)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--context-file", required=True, help="consortium.pub")
        parser.add_argument(
            "--params-file", help=f"CKKS parameters (default: {PARAMS_NAME} beside the context)"
        )

    def handle(
        self, *args: Any, context_file: str, params_file: str | None, **options: Any
    ) -> None:
        context = file_bytes(context_file, "the public CKKS context", KEYGEN_FIX)
        params_path = Path(params_file or Path(context_file).with_name(PARAMS_NAME))
        params = json_file(params_path, "CKKS parameters", f"pass --params-file {PARAMS_NAME}")
        if not isinstance(params, dict):
            raise CommandError(f"{params_path}: CKKS parameters must be a JSON object")
        with refusals(f"{context_file}: key epoch not registered"):
            epoch = key_epoch_register(
                public_context=context, ckks_params=params, actor=cli_actor("key_epoch_register")
            )
        self.stdout.write(f"key epoch {epoch.number} registered: fingerprint {epoch.fingerprint}")

"""Onboard a bank: its API account, whose credential is shown once or written to a 0600 file."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from consortium.members.services import bank_create
from consortium.operator_cli import cli_actor, file_text, private_file, refusals


class Command(BaseCommand):
    help = (
        "Create a bank's API account. The credential is printed once (or written to "
        "--credential-file, mode 0600) and stored only hashed; hand it to the bank out of band."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the bank's id, as in its node.toml `bank` field")
        parser.add_argument("--name", default="", help="display name (default: the slug)")
        parser.add_argument(
            "--credential-file",
            help="write the credential to this new file (0600) instead of printing it",
        )
        parser.add_argument(
            "--signing-key-file",
            help="the bank's signing.pub (optional: the bank may register it itself)",
        )

    def handle(self, *args: Any, slug: str, name: str, **options: Any) -> None:
        key = self._signing_key(options["signing_key_file"])
        path = options["credential_file"]
        if path is None:
            bank, credential = self._create(slug, name, key)
            self.stdout.write(f"bank {bank.slug} onboarded; API credential (shown once):")
            self.stdout.write(credential)
            return
        with private_file(path) as handle:
            bank, credential = self._create(slug, name, key)
            handle.write(credential + "\n")
        self.stdout.write(f"bank {bank.slug} onboarded; API credential written to {path} (0600)")

    def _create(self, slug: str, name: str, key: str) -> tuple[Any, str]:
        with refusals(f"bank {slug!r} not onboarded"):
            return bank_create(
                slug=slug, name=name, actor=cli_actor("bank_onboard"), signing_public_key=key
            )

    def _signing_key(self, path: str | None) -> str:
        if path is None:
            return ""
        fix = "pass the signing.pub that `bank-node signing-keygen` wrote"
        return file_text(path, "the bank's signing public key", fix).strip()

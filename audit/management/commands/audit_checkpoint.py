"""Sign the current head of the audit chain with the portal's key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from audit.services import audit_checkpoint_create


class Command(BaseCommand):
    help = "Sign the chain head now (rounds sign it themselves when they close)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--reason", default="on demand (manage.py audit_checkpoint)")

    def handle(self, *args: Any, reason: str, **options: Any) -> None:
        checkpoint = audit_checkpoint_create(reason=reason)
        self.stdout.write(
            f"checkpoint of event #{checkpoint.seq} {checkpoint.head_hash} signed at "
            f"{checkpoint.signed_at.isoformat()} by {checkpoint.public_key}"
        )

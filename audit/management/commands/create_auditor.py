"""Create (or update) an auditor account without a prompt: read everything, change nothing."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.context import acting_as
from audit.signals import AUDITORS_GROUP, auditors_group_sync


class Command(BaseCommand):
    help = (
        f"Create an auditor (staff, in the '{AUDITORS_GROUP}' group, view permissions only) "
        "with the given password."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--password-file",
            required=True,
            help="file holding the password (kept out of shell history)",
        )

    def handle(self, *args: Any, username: str, password_file: str, **options: Any) -> None:
        try:
            with open(password_file) as handle:
                password = handle.read().strip()
        except OSError as exc:
            raise CommandError(f"cannot read {password_file}: {exc.strerror}") from exc
        if len(password) < 12:
            raise CommandError(f"{password_file}: the password must have at least 12 characters")
        try:
            # The settings' validators, as the back office applies them to a changed password.
            validate_password(password, User(username=username))
        except ValidationError as exc:
            raise CommandError(f"{password_file}: {' '.join(exc.messages)}") from exc
        with acting_as("cli:create_auditor"), transaction.atomic():
            user, _ = User.objects.get_or_create(username=username)
            if user.is_superuser or user.groups.filter(name="operators").exists():
                raise CommandError(
                    f"{username} is an operator; an auditor account must not be able to change "
                    "anything, so use a separate account"
                )
            # Staff only so that the back office lets them in; the group grants view_ only.
            user.is_staff = True
            user.set_password(password)
            user.save()
            user.groups.add(auditors_group_sync())
        self.stdout.write(f"auditor {username} ready")

"""Create (or update) an auditor account without a prompt: read everything, change nothing."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from audit.context import acting_as
from audit.signals import AUDITORS_GROUP, auditors_group_sync
from consortium.members.accounts import (
    add_account_arguments,
    password_from_file,
    staff_user_save,
)


class Command(BaseCommand):
    help = (
        f"Create an auditor (staff, in the '{AUDITORS_GROUP}' group, view permissions only) "
        "with the given password."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_account_arguments(parser)

    def handle(self, *args: Any, username: str, password_file: str, **options: Any) -> None:
        password = password_from_file(password_file, username)
        with acting_as("cli:create_auditor"), transaction.atomic():
            existing = User.objects.filter(username=username).first()
            if existing is not None and (
                existing.is_superuser or existing.groups.filter(name="operators").exists()
            ):
                raise CommandError(
                    f"{username} is an operator; an auditor account must not be able to change "
                    "anything, so use a separate account"
                )
            # Staff only so that the back office lets them in; the group grants view_ only.
            user = staff_user_save(username, password)
            user.groups.add(auditors_group_sync())
        self.stdout.write(f"auditor {username} ready")

"""Create (or update) an operator account without a prompt, for bootstrap and demos."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandParser

from consortium.members.accounts import add_account_arguments, password_from_file, staff_user_save


class Command(BaseCommand):
    help = "Create an operator (staff, in the 'operators' group) with the given password."

    def add_arguments(self, parser: CommandParser) -> None:
        add_account_arguments(parser)

    def handle(self, *args: Any, username: str, password_file: str, **options: Any) -> None:
        password = password_from_file(password_file, username)
        user = staff_user_save(username, password)
        group, _ = Group.objects.get_or_create(name="operators")
        # Operators manage banks, policies, key epochs and rounds; they only read the trail
        # and the security log (failed sign-ins).
        group.permissions.set(
            Permission.objects.filter(content_type__app_label__in=["members", "rounds"])
            | Permission.objects.filter(
                content_type__app_label__in=["audit", "api"], codename__startswith="view_"
            )
        )
        user.groups.add(group)
        self.stdout.write(f"operator {username} ready")

"""Create (or update) an operator account without a prompt, for bootstrap and demos."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission, User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create an operator (staff, in the 'operators' group) with the given password."

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
        user, _ = User.objects.get_or_create(username=username)
        user.is_staff = True
        user.set_password(password)
        user.save()
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

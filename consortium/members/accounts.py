"""Staff accounts made from the command line: the password comes from a file, checked once."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser


def add_account_arguments(parser: CommandParser) -> None:
    parser.add_argument("username")
    parser.add_argument(
        "--password-file",
        required=True,
        help="file holding the password (kept out of shell history)",
    )


def password_from_file(password_file: str, username: str) -> str:
    """The password in ``password_file``, checked by the settings' validators.

    The same validators the back office applies to a changed password; every problem is a
    ``CommandError`` that names the file.
    """
    try:
        with open(password_file) as handle:
            password = handle.read().strip()
    except OSError as exc:
        raise CommandError(f"cannot read {password_file}: {exc.strerror}") from exc
    if len(password) < 12:
        raise CommandError(f"{password_file}: the password must have at least 12 characters")
    try:
        validate_password(password, User(username=username))
    except ValidationError as exc:
        raise CommandError(f"{password_file}: {' '.join(exc.messages)}") from exc
    return password


def staff_user_save(username: str, password: str) -> User:
    """Create or update ``username`` as staff (the back office lets them in) with ``password``."""
    user, _ = User.objects.get_or_create(username=username)
    user.is_staff = True
    user.set_password(password)
    user.save()
    return user

"""What the operator's management commands share: file reads, refusals, the audit actor.

Every command is a thin wrapper over a service; a refusal or an unreadable file becomes a
``CommandError`` that names the file or the field and says what to do, never a traceback.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import CommandError

from consortium.api.errors import ApplicationError, refusal_record
from governance import RosterError
from governance.encoding import strict_json_loads


def cli_actor(command: str) -> str:
    """Who the audit trail names for a command: the operating-system user and the command."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        user = "unknown"
    return f"cli:{user}:{command}"


def file_bytes(path: str | Path, what: str, fix: str) -> bytes:
    """The bytes of ``path``; a ``CommandError`` naming the file, what it should be and the fix."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"{path}: cannot read {what}: {exc.strerror}; {fix}") from None


def file_text(path: str | Path, what: str, fix: str) -> str:
    raw = file_bytes(path, what, fix)
    try:
        return raw.decode()
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path}: {what} is not UTF-8 text ({exc.reason}); {fix}") from None


def json_file(path: str | Path, what: str, fix: str) -> Any:
    """Strict JSON (duplicate keys, NaN refused) with the line and column of a syntax error."""
    text = file_text(path, what, fix)
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(
            f"{path}, line {exc.lineno} column {exc.colno}: {what} is not JSON: {exc.msg}; {fix}"
        ) from None
    try:
        return strict_json_loads(text)
    except RosterError as exc:
        raise CommandError(f"{path}: {what}: {exc}; {fix}") from None


@contextmanager
def refusals(context: str) -> Iterator[None]:
    """Turn a service's refusal into a ``CommandError`` (its audit event written first)."""
    try:
        yield
    except ApplicationError as exc:
        refusal_record(exc)
        raise CommandError(f"{context}: {exc.message}") from None
    except RosterError as exc:
        raise CommandError(f"{context}: {exc}") from None


@contextmanager
def private_file(path: str | Path) -> Iterator[TextIO]:
    """A new file only its owner can read (0600), created before the work that fills it.

    Created first so that an unwritable path stops a command before it changes anything;
    removed again when the work fails. An existing file is never overwritten.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CommandError(
            f"{path} exists; refusing to overwrite it (choose another path)"
        ) from None
    except OSError as exc:
        raise CommandError(f"{path}: cannot create: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w") as handle:
            yield handle
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise

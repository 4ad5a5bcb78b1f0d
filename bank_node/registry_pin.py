"""The rollback pin: after ``models rollback`` the promoted version stays until a person promotes.

A rollback is a person saying "the newer model was wrong for us". Without a pin the
next model the consortium publishes would be promoted automatically as soon as it is
within ``promotion_tolerance``, silently undoing that decision. So a rollback writes
``models/pin.json`` (the version rolled back to, when, and by whom); while it exists the
node stores and evaluates every new version but holds it (``pinned_by_rollback``), and
only ``bank-node models promote VERSION`` (which removes the pin) changes what is served.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from pathlib import Path

from bank_node.config import ConfigError

PIN_FILE = "pin.json"
PINNED = "pinned_by_rollback"  # the held reason of a version the pin kept from promotion


@dataclass(frozen=True)
class Pin:
    """The promoted version a rollback pinned: which, when (UTC, ISO 8601), by whom."""

    version: str
    at: str
    by: str

    def describe(self) -> str:
        """In words, for ``models list``, ``show`` and a held version's detail."""
        return f"{self.version} pinned by rollback at {self.at}, by {self.by}"

    def to_dict(self) -> dict[str, str]:
        return {"version": self.version, "at": self.at, "by": self.by}


def read_pin(root: Path) -> Pin | None:
    """The pin in the registry directory ``root`` (None: not pinned); ConfigError if corrupt."""
    path = root / PIN_FILE
    if not path.exists():
        return None
    try:
        fields = json.loads(path.read_text())
        return Pin(str(fields["version"]), str(fields["at"]), str(fields["by"]))
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: not a rollback pin ({exc}); `bank-node models promote VERSION` replaces it"
        ) from exc


def write_pin(root: Path, pin: Pin) -> None:
    """Write the pin whole (a reader sees the old file or the new one, never half)."""
    path = root / PIN_FILE
    tmp = path.with_name(f".{PIN_FILE}.tmp")
    tmp.write_text(json.dumps(pin.to_dict(), indent=2))
    os.replace(tmp, path)


def clear_pin(root: Path) -> None:
    (root / PIN_FILE).unlink(missing_ok=True)


def current_user() -> str:
    """Who is running the command, for the record ("unknown" when the OS cannot say)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return "unknown"

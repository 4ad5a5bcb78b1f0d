"""The node config's value readers: each checks one TOML value and names the file and field."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """The configuration file is missing, malformed or points at unreadable files."""


REFERENCE_DOC = "docs/node-config.md"


def refuse_unknown(path: Path, table: str, raw: dict[str, Any], known: Iterable[str]) -> None:
    """Refuse a field the node does not know, with the nearest known name as the fix."""
    names = sorted(known)
    for name in sorted(set(raw) - set(names)):
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"the fields are {', '.join(names)}"
        where = f"[{table}] " if table else ""
        raise ConfigError(
            f"{path}: unknown field {where}{name!r}: {hint} (every field: {REFERENCE_DOC})"
        )


def as_text(path: Path, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f'{path}: {name} must be a non-empty string in quotes, e.g. {name} = "..."'
        )
    return value


def as_path(path: Path, name: str, value: Any) -> Path:
    p = Path(as_text(path, name, value))
    return p if p.is_absolute() else (path.parent / p).resolve()


def as_paths(path: Path, name: str, value: Any) -> tuple[Path, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'{path}: {name} must be a list of directory paths, e.g. ["keys-1/"]')
    return tuple(as_path(path, name, v) for v in value)


def as_flag(path: Path, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: {name} must be true or false")
    return value


def as_number(path: Path, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{path}: {name} must be a non-negative number, not {value!r}")
    return float(value)


def as_integer(path: Path, name: str, value: Any) -> int:
    return int(as_number(path, name, value))


def as_count(path: Path, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{path}: {name} must be a whole number >= 1, not {value!r}")
    return value

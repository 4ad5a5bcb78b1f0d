"""A round policy read from an operator's TOML or YAML file, every field checked by name.

The file holds ``name`` and any of the policy fields an operator chooses (the deadline as
``deadline_seconds``, as in the REST API); a field left out takes the policy's default.
Every problem is a ``PolicyFileError`` naming the file, the line where it can tell, the
field and what to write instead.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from django.db import models

from consortium.rounds.models import POLICY_FIELDS, RoundPolicy

# The operator's fields as they are spelled in a file: the deadline in whole seconds.
FILE_FIELDS: tuple[str, ...] = tuple(
    "deadline_seconds" if name == "deadline" else name for name in POLICY_FIELDS
)
SUFFIXES = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML"}


def field_defaults() -> dict[str, Any]:
    """Each file field's default, as a file would spell it (the deadline in seconds)."""
    defaults: dict[str, Any] = {}
    for name in FILE_FIELDS:
        if name == "deadline_seconds":
            deadline = _model_field("deadline").get_default()
            defaults[name] = int(deadline.total_seconds())
        else:
            defaults[name] = _model_field(name).get_default()
    return defaults


class PolicyFileError(ValueError):
    """The policy file cannot be read, parsed or has a field that is wrong."""


@dataclass(frozen=True)
class PolicyFile:
    """A parsed policy file: the policy's name and the fields ``policy_create`` takes."""

    path: Path
    text: str
    name: str
    fields: dict[str, Any]

    def where(self, field: str) -> str:
        """``path, line N`` for the line that sets ``field`` (the path alone if not found)."""
        return _where(self.path, self.text, field)


def _where(path: Path, text: str, field: str) -> str:
    pattern = re.compile(rf"^\s*(\[\s*{re.escape(field)}\s*\]|{re.escape(field)}\s*[=:])")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return f"{path}, line {number}"
    return str(path)


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice (YAML would keep the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is written twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse(path: Path, text: str) -> Any:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise PolicyFileError(f"{path}: name the file .toml, .yaml or .yml so its format is known")
    try:
        return tomllib.loads(text) if kind == "TOML" else yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a safe loader
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(f"{path}: not valid TOML: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f", line {mark.line + 1}" if mark is not None else ""
        raise PolicyFileError(f"{path}{at}: not valid YAML: {exc}") from None


def _model_field(name: str) -> models.Field[Any, Any]:
    field = RoundPolicy._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field


def _expected(name: str) -> tuple[tuple[type, ...], str]:
    """The Python types a file value of ``name`` may have, and how to say so."""
    if name == "deadline_seconds":
        return (int,), "a whole number of seconds"
    field = _model_field(name)
    if isinstance(field, models.BooleanField):
        return (bool,), "true or false"
    if isinstance(field, models.IntegerField):
        return (int,), "a whole number"
    if isinstance(field, models.FloatField):
        return (int, float), "a number"
    if isinstance(field, models.JSONField):
        return (dict,), "a table (TOML [section]) or mapping (YAML)"
    return (str,), "a string"


def _nullable(name: str) -> bool:
    return name != "deadline_seconds" and _model_field(name).null


def _type_ok(value: object, types: tuple[type, ...]) -> bool:
    # TOML and YAML booleans are ints to Python: true is not a whole number here.
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


def _checked(name: str, value: Any, where: str) -> Any:
    types, words = _expected(name)
    if value is None and _nullable(name):
        return None
    if not _type_ok(value, types):
        raise PolicyFileError(f"{where}: {name} must be {words}, not {value!r}")
    return _deadline(value, where) if name == "deadline_seconds" else value


def _deadline(seconds: int, where: str) -> timedelta:
    if seconds < 1:
        raise PolicyFileError(f"{where}: deadline_seconds must be at least 1, not {seconds}")
    return timedelta(seconds=seconds)


def _name(path: Path, text: str, raw: dict[str, Any]) -> str:
    name = raw.pop("name", None)
    if not isinstance(name, str) or not name.strip():
        raise PolicyFileError(
            f'{_where(path, text, "name")}: the policy needs a name, e.g. name = "fraud"'
        )
    return name.strip()


def policy_file_read(path: Path) -> PolicyFile:
    """Read and check ``path``; unknown fields are refused by name, wrong types by field."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise PolicyFileError(f"{path}: cannot read the policy file: {why}") from None
    raw = _parse(path, text)
    if not isinstance(raw, dict):
        raise PolicyFileError(
            f"{path}: a policy file holds fields (name = ..., local_epochs = ...)"
        )
    name = _name(path, text, raw)
    for field in raw:
        if field not in FILE_FIELDS:
            raise PolicyFileError(
                f"{_where(path, text, str(field))}: unknown policy field {field!r}; the fields "
                f"are name, {', '.join(FILE_FIELDS)}"
            )
    fields = {
        "deadline" if key == "deadline_seconds" else key: _checked(
            key, value, _where(path, text, key)
        )
        for key, value in raw.items()
    }
    return PolicyFile(path, text, name, fields)

"""One strict decoder and one encoder shared by every message dataclass.

A message is a frozen dataclass whose fields use only: ``bool``, ``int``, ``float``,
``str``, ``datetime``, ``dict[str, Any]``, ``tuple[X, ...]``, another message, and
``X | None``. Decoding refuses a missing field (unless it has a default), a field the
class does not declare, and a value of the wrong type, each with a ``ProtocolError``
naming the field. A class may define a static ``_from_wire(data) -> data`` to map a
wire spelling to its own before decoding.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from protocol.errors import ProtocolError

T = TypeVar("T")


def decode(cls: type[T], data: object, where: str = "") -> T:
    """Build message ``cls`` from a decoded-JSON value, or raise ``ProtocolError``."""
    if not isinstance(data, Mapping):
        raise ProtocolError(where or cls.__name__, f"expected an object, got {_kind(data)}")
    # A class may map a wire spelling to its own first (``RoundInfo``: ``{}`` manifest).
    wire: Mapping[str, Any] = getattr(cls, "_from_wire", lambda d: d)(data)
    hints = typing.get_type_hints(cls)
    declared = dataclasses.fields(cls)  # type: ignore[arg-type]
    unknown = sorted(set(wire) - {f.name for f in declared}, key=str)
    if unknown:
        raise ProtocolError(_join(where, str(unknown[0])), "is not a field of this message")
    values: dict[str, Any] = {}
    for f in declared:
        path = _join(where, f.name)
        if f.name in wire:
            values[f.name] = _value(hints[f.name], wire[f.name], path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ProtocolError(path, "is missing")
    try:
        return cls(**values)
    except ProtocolError as exc:
        raise ProtocolError(_join(where, exc.field), exc.problem) from exc


def encode(message: object) -> dict[str, Any]:
    """The JSON-ready dict of a message: tuples as lists, datetimes as ISO 8601."""
    return {
        f.name: _plain(getattr(message, f.name))
        for f in dataclasses.fields(message)  # type: ignore[arg-type]
    }


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return encode(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        # As Django REST framework writes them, so a re-encoded message reads the same.
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    return copy.deepcopy(value)


def _value(tp: Any, value: object, path: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _value(inner, value, path)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return decode(tp, value, path)  # type: ignore[arg-type]
    if origin is tuple:
        return _sequence(args[0], value, path)
    if origin is dict or tp is dict:
        return _object(value, path)
    return _scalar(tp, value, path)


def _scalar(tp: Any, value: object, path: str) -> Any:
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ProtocolError(path, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    if tp is datetime and isinstance(value, str):
        return _datetime(value, path)
    raise ProtocolError(path, f"expected {_name(tp)}, got {_kind(value)}")


def _sequence(item: Any, value: object, path: str) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise ProtocolError(path, f"expected a list, got {_kind(value)}")
    return tuple(_value(item, v, f"{path}[{i}]") for i, v in enumerate(value))


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ProtocolError(path, f"expected an object, got {_kind(value)}")
    return copy.deepcopy(dict(value))


def _datetime(value: str, path: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ProtocolError(path, f"expected an ISO 8601 date-time, got {value!r}") from exc
    if parsed.tzinfo is None:
        raise ProtocolError(path, f"date-time {value!r} has no time zone")
    return parsed.astimezone(UTC)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _name(tp: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(tp, "an ISO 8601 date-time" if tp is datetime else str(tp))


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return f"{type(value).__name__} {value!r}"[:80]

"""Canonical JSON, hashing and strict field readers for ``from_dict``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from governance.errors import RosterError

# Ed25519 with base64 keys and signatures: the same primitives the upload signatures use
# (``he.signing``: ``public_key_b64``, ``sign``, ``verify``).
from he.signing import public_key_b64 as public_key_b64

# The floor is the protocol's (the portal and the node refuse a smaller policy too); the
# charter re-uses it so that the two can never disagree.
from protocol.policy import MIN_BANKS_FLOOR as MIN_BANKS_FLOOR
from protocol.policy import MIN_BANKS_FLOOR_TEXT as MIN_BANKS_FLOOR_TEXT

SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,49}")
HEX64 = re.compile(r"[0-9a-f]{64}")
ZERO_HASH = "0" * 64
MAX_TEXT = 2000


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON with sorted keys and no whitespace; NaN and Infinity are refused."""
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError as exc:
        raise RosterError(f"cannot encode canonically: {exc}", code="bad_field") from exc
    return text.encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_hint(key_b64: str) -> str:
    """A short hex prefix of a raw public key, for people comparing keys by eye."""
    return base64.b64decode(key_b64).hex()[:16] + "…"


# --- checks on values, used by the dataclasses' __post_init__ ------------------------------


def check_slug(value: object, field: str) -> str:
    if not isinstance(value, str) or not SLUG.fullmatch(value):
        raise RosterError(
            f"{field} must be a slug (lowercase letters, digits, '-' or '_', at most 50), "
            f"got {value!r}",
            code="bad_field",
        )
    return value


def check_hex64(value: object, field: str) -> str:
    if not isinstance(value, str) or not HEX64.fullmatch(value):
        raise RosterError(
            f"{field} must be 64 lowercase hex characters (a SHA-256), got {value!r}",
            code="bad_field",
        )
    return value


def check_text(value: object, field: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT or (not allow_empty and not value):
        need = "a string" if allow_empty else "a non-empty string"
        raise RosterError(
            f"{field} must be {need} of at most {MAX_TEXT} characters", code="bad_field"
        )
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        raise RosterError(f"{field} must not contain control characters", code="bad_field")
    return value


def check_timestamp(value: object, field: str) -> str:
    try:
        if not isinstance(value, str) or len(value) > 64:
            raise ValueError
        datetime.fromisoformat(value)
    except ValueError:
        raise RosterError(
            f"{field} must be an ISO 8601 timestamp, got {value!r}", code="bad_field"
        ) from None
    return value


def check_int(value: object, field: str, *, minimum: int) -> int:
    # bool is an int in Python; a JSON true must not pass as 1.
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise RosterError(
            f"{field} must be an integer >= {minimum}, got {value!r}", code="bad_field"
        )
    return value


def check_positive_float(value: object, field: str) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or float(value) <= 0:  # type: ignore[arg-type]
        raise RosterError(f"{field} must be a finite number > 0, got {value!r}", code="bad_field")
    return float(value)  # type: ignore[arg-type]


def check_raw_key(value: object, field: str, *, agreement: bool) -> str:
    """A base64 raw 32-byte Ed25519 (or X25519) public key in its one canonical spelling."""
    try:
        if not isinstance(value, str):
            raise ValueError
        raw = base64.b64decode(value, validate=True)
        # One key, one spelling: otherwise a key could pass a uniqueness check twice.
        if len(raw) != 32 or base64.b64encode(raw).decode() != value:
            raise ValueError
        if agreement:
            X25519PublicKey.from_public_bytes(raw)
        else:
            Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        kind = "X25519" if agreement else "Ed25519"
        raise RosterError(
            f"{field} must be a base64 raw 32-byte {kind} public key", code="bad_field"
        ) from None
    return value


# --- readers for from_dict: strict about shape, naming the field ---------------------------


def read_object(data: object, where: str, fields: set[str]) -> Mapping[str, Any]:
    """``data`` as a mapping holding exactly ``fields``; anything else is refused."""
    if not isinstance(data, Mapping):
        raise RosterError(f"{where} must be a JSON object", code="bad_field")
    missing = sorted(fields - set(data))
    extra = sorted(set(data) - fields)
    if missing:
        raise RosterError(f"{where}: missing field(s) {', '.join(missing)}", code="bad_field")
    if extra:
        raise RosterError(f"{where}: unexpected field(s) {', '.join(extra)}", code="bad_field")
    return data


def read_list(data: Mapping[str, Any], name: str, where: str) -> list[Any]:
    value = data[name]
    if not isinstance(value, list):
        raise RosterError(f"{where}.{name} must be a list", code="bad_field")
    return value


def read_bool(data: Mapping[str, Any], name: str, where: str) -> bool:
    value = data[name]
    if not isinstance(value, bool):
        raise RosterError(f"{where}.{name} must be true or false", code="bad_field")
    return value


def strict_json_loads(text: str | bytes) -> Any:
    """Parse JSON refusing duplicate keys and NaN/Infinity, which would hide what was signed."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                raise RosterError(f"duplicate JSON key {key!r}", code="bad_field")
            seen[key] = value
        return seen

    def constant(name: str) -> Any:
        raise RosterError(f"JSON constant {name} is not allowed", code="bad_field")

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, RosterError):
            raise
        raise RosterError(f"not valid JSON: {exc}", code="bad_field") from None

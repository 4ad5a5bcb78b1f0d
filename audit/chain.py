"""The pure part of the chain: canonical encoding and hashing (no Django)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = "0" * 64


def canonical(event: dict[str, Any]) -> bytes:
    """Deterministic bytes for an event: sorted keys, no whitespace, UTF-8."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(prev_hash: str, event: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the canonical event."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(event)).hexdigest()

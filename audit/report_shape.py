"""The shape an exported audit report must have before the verifier reads it (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from audit.roster_verify import roster_shape_problem


class Malformed(Exception):
    """The file is unreadable or is not a report; the message says what is wrong."""


EVENT_FIELDS = {
    "seq": int,
    "created_at": str,
    "actor": str,
    "action": str,
    "object_type": str,
    "object_id": str,
    "prev_hash": str,
    "hash": str,
}
CHECKPOINT_FIELDS = {
    "seq": int,
    "head_hash": str,
    "signed_at": str,
    "reason": str,
    "public_key": str,
    "signature": str,
}
SUBMISSION_FIELDS = {
    "bank": str,
    "digest": str,
    "signature": str,
    "signing_public_key": str,
    "signature_valid": bool,
    "in_manifest": bool,
}


def _need(obj: Any, fields: Mapping[str, type], where: str) -> None:
    if not isinstance(obj, dict):
        raise Malformed(f"{where}: expected an object")
    for name, kind in fields.items():
        value = obj.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise Malformed(f"{where}: {name} is missing or not a {kind.__name__}")


def _list(obj: Mapping[str, Any], name: str, where: str) -> list[Any]:
    value = obj.get(name)
    if not isinstance(value, list):
        raise Malformed(f"{where}: {name} is missing or not a list")
    return value


def check_shape(report: dict[str, Any]) -> None:
    for i, event in enumerate(_list(report, "events", "report")):
        _need(event, EVENT_FIELDS, f"events[{i}]")
        if "data" not in event:
            raise Malformed(f"events[{i}]: data is missing")
    for i, cp in enumerate(_list(report, "checkpoints", "report")):
        _need(cp, CHECKPOINT_FIELDS, f"checkpoints[{i}]")
    _need(report.get("signed_head"), CHECKPOINT_FIELDS, "signed_head")
    for i, rnd in enumerate(_list(report, "rounds", "report")):
        _need(rnd, {"number": int, "state": str}, f"rounds[{i}]")
        for j, sub in enumerate(_list(rnd, "submissions", f"rounds[{i}]")):
            _need(sub, SUBMISSION_FIELDS, f"rounds[{i}].submissions[{j}]")
        manifest = rnd.get("manifest")
        if manifest is not None and not isinstance(manifest, dict):
            raise Malformed(f"rounds[{i}]: manifest is not an object")
    roster_problem = roster_shape_problem(report.get("roster"))
    if roster_problem is not None:
        raise Malformed(roster_problem)
    _need(report.get("chain"), {"first_prev_hash": str}, "chain")
    _need(report.get("verification"), {"ok": bool, "reason": str}, "verification")
    _need(
        report.get("signature"),
        {"public_key": str, "body_sha256": str, "value": str},
        "signature",
    )

"""The pure part of the chain: canonical encoding, hashing, signed messages, the walk.

Nothing here imports Django: the offline verifier (``python -m audit.verify``) runs this
same code on an exported report that the portal's database never sees again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from he.signing import verify

GENESIS = "0" * 64
# The fields of an event that its hash covers, besides the previous hash.
BODY_FIELDS = ("seq", "created_at", "actor", "action", "object_type", "object_id", "data")
CHECKPOINT_DOMAIN = "consortium-audit-checkpoint-v1"
REPORT_DOMAIN = "consortium-audit-report-v1"
# A report's signature block, as the portal writes it (an evidence pack's manifest has the
# same without body_sha256). The block is outside what is signed, so a verifier accepts
# exactly these members.
SIGNATURE_ALGORITHM = "Ed25519"
SIGNATURE_MEMBERS = frozenset({"algorithm", "public_key", "body_sha256", "value"})
# How far back a renumbered event may have moved and still be recognised as shifted.
_MAX_SHIFT = 16


def canonical(event: Any) -> bytes:
    """Deterministic bytes for an event: sorted keys, no whitespace, UTF-8."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(prev_hash: str, event: Mapping[str, Any]) -> str:
    """SHA-256 over the previous hash and the canonical event."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(dict(event))).hexdigest()


def event_body(event: Mapping[str, Any]) -> dict[str, Any]:
    """The hashed part of an event given as a mapping with (at least) the body fields."""
    return {name: event[name] for name in BODY_FIELDS}


def checkpoint_message(seq: int, head_hash: str, signed_at: str, reason: str) -> bytes:
    """The exact bytes the portal signs for a checkpoint of the chain head."""
    return f"{CHECKPOINT_DOMAIN}\n{seq}\n{head_hash}\n{signed_at}\n{reason}".encode()


def report_body_sha256(report: Mapping[str, Any]) -> str:
    """SHA-256 of a report's canonical encoding, without its ``signature`` member."""
    body = {k: v for k, v in report.items() if k != "signature"}
    return hashlib.sha256(canonical(body)).hexdigest()


def signature_block_problem(
    signature: Any, members: frozenset[str] = SIGNATURE_MEMBERS
) -> str | None:
    """Why a signature block is not one the portal writes (None when it is).

    Its members are not covered by the signature; without this check a changed
    ``algorithm`` (or a member added beside the others) would go unnoticed.
    """
    if not isinstance(signature, Mapping) or set(signature) != members:
        return f"the signature block must hold exactly {', '.join(sorted(members))}"
    if signature["algorithm"] != SIGNATURE_ALGORITHM:
        return f"the signature's algorithm must be {SIGNATURE_ALGORITHM}"
    return None


def report_message(body_sha256: str) -> bytes:
    """The exact bytes the portal signs for a whole exported report."""
    return f"{REPORT_DOMAIN}\n{body_sha256}".encode()


def encode_report(report: Mapping[str, Any]) -> bytes:
    """The one byte encoding of a JSON report: readable, and checkable byte for byte."""
    return (json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


@dataclass(frozen=True)
class ChainResult:
    """What a walk along the chain found.

    ``problem`` is one of "" (intact), "modified", "deleted", "inserted", "link" (a link
    was rewritten), "head" or "checkpoint"; ``first_bad_seq`` names the event concerned.
    """

    ok: bool
    events: int
    first_bad_seq: int | None
    problem: str
    reason: str
    last_seq: int | None = None
    last_hash: str = GENESIS


def _shifted_from(event: Mapping[str, Any]) -> int | None:
    """The seq under which ``event`` was hashed, if it was renumbered to a lower one."""
    body = event_body(event)
    for shift in range(1, _MAX_SHIFT + 1):
        body["seq"] = event["seq"] + shift
        if event_hash(event["prev_hash"], body) == event["hash"]:
            return int(body["seq"])
    return None


def _pairs(
    events: Iterable[Mapping[str, Any]],
) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any] | None]]:
    """Each event with the one after it (``None`` for the last)."""
    it = iter(events)
    current = next(it, None)
    while current is not None:
        following = next(it, None)
        yield current, following
        current = following


def verify_events(
    events: Iterable[Mapping[str, Any]], *, prev_hash: str = GENESIS, first_seq: int = 1
) -> ChainResult:
    """Walk ``events`` in order and name the first one that was modified, deleted or inserted.

    ``prev_hash`` and ``first_seq`` say where the walk starts: the genesis for a whole
    chain, or the first event's recorded predecessor for an excerpt. Each event is a
    mapping with the body fields plus ``prev_hash`` and ``hash``. An attacker who rewrites
    every hash after an edit passes this walk; signed checkpoints catch that.
    """
    before_prev: str | None = None
    expected, count = first_seq, 0
    last_seq: int | None = None
    for event, following in _pairs(events):
        seq = event["seq"]
        problem = _event_problem(event, following, expected, prev_hash, before_prev)
        if problem is not None:
            at, kind, reason = problem
            return ChainResult(False, count, at, kind, reason, last_seq, prev_hash)
        before_prev, prev_hash = prev_hash, event["hash"]
        last_seq, expected, count = seq, expected + 1, count + 1
    return ChainResult(True, count, None, "", "chain intact", last_seq, prev_hash)


def _event_problem(
    event: Mapping[str, Any],
    following: Mapping[str, Any] | None,
    expected: int,
    prev_hash: str,
    before_prev: str | None,
) -> tuple[int, str, str] | None:
    """(seq to name, kind, reason) for the first thing wrong with ``event``, or None."""
    seq = event["seq"]
    if seq < expected:
        return seq, "inserted", f"event #{seq} is out of sequence: it was inserted"
    if seq > expected:
        gap = f"#{expected}" if seq == expected + 1 else f"#{expected} to #{seq - 1}"
        return expected, "deleted", f"event {gap} is missing: deleted"
    links = event["prev_hash"] == prev_hash
    intact = event_hash(event["prev_hash"], event_body(event)) == event["hash"]
    if links and intact:
        return None
    if not links and before_prev is not None and event["prev_hash"] == before_prev:
        # A well-forged insertion: it links and hashes correctly, but the event that
        # really came next still points past it.
        return seq - 1, "inserted", f"event #{seq - 1} was inserted: #{seq} links past it"
    if following is not None and following["prev_hash"] == prev_hash:
        return seq, "inserted", f"event #{seq} was inserted: #{seq + 1} links past it"
    if not intact:
        original = _shifted_from(event)
        if original is not None:
            return (
                seq,
                "deleted",
                f"event #{seq} was hashed as #{original}: an event before it was deleted "
                "and the later ones renumbered",
            )
        return seq, "modified", f"event #{seq} was modified: its content no longer matches its hash"
    return (
        seq,
        "link",
        f"event #{seq} does not link to event #{seq - 1}: the event before it was replaced "
        "or this link rewritten",
    )


def checkpoint_problem(
    checkpoint: Mapping[str, Any], *, trusted_keys: Collection[str], hash_at_seq: str | None
) -> str | None:
    """What is wrong with a checkpoint, or None.

    ``hash_at_seq`` is the hash of the event the checkpoint names, when the caller has
    it (``GENESIS`` for a checkpoint of the empty chain); None skips that comparison.
    """
    if checkpoint["public_key"] not in trusted_keys:
        return "is signed by a key that is not the portal's trusted key"
    message = checkpoint_message(
        checkpoint["seq"], checkpoint["head_hash"], checkpoint["signed_at"], checkpoint["reason"]
    )
    if not verify(checkpoint["public_key"], message, checkpoint["signature"]):
        return "has a signature that does not verify"
    if hash_at_seq is not None and hash_at_seq != checkpoint["head_hash"]:
        return (
            f"does not match event #{checkpoint['seq']}: the history up to that event "
            "was rewritten after it was signed"
        )
    return None

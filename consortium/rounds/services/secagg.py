"""Writes for secure aggregation v2: a bank's mask keys (sharing) and its reveal (unmasking).

The round protocol is ``docs/secure-aggregation.md`` ("The round protocol (part 2)"). Every
refusal is counted and marked for the audit trail (``mask_keys.refused``,
``reveal.refused``), recorded once the request is answered; nothing stored changes. An
accepted message and its audit event are written in one transaction under the round's row
lock. A retry with the same body gets the stored row back; a different body is a 409.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import audit_record
from consortium import metrics
from consortium.api.errors import ApplicationError, Conflict, Forbidden, NotFound
from consortium.governance import selectors as roster
from consortium.members.models import Bank
from consortium.rounds import secagg_selectors
from consortium.rounds.models import MaskKey, Round, RoundState, ShareReveal
from he.errors import HEError
from he.shamir import Share
from he.sharebox import MAX_SEALED_BYTES
from he.signing import verify
from protocol import MaskKeysPost, Reveal, mask_keys_message

# A sealed box is a 12-byte nonce and a 16-byte tag around its payload (he/sharebox.py).
MIN_SEALED_BYTES = 28
MASK_KEY_BYTES = 32  # a raw X25519 public key
_HEX_64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class _Caller:
    """Who sent which kind of message to which round: what a refusal is recorded under."""

    kind: str  # "mask_keys" or "reveal": the metric label and the audit action's prefix
    bank: Bank
    number: int
    actor: str

    def refuse(self, reason: str, exc: ApplicationError) -> NoReturn:
        """Count and raise a refusal, marked for the audit trail; nothing is stored."""
        metrics.secagg_message(self.kind, "refused")
        raise exc.audited(
            action=f"{self.kind}.refused",
            actor=self.actor,
            target=self.bank,
            data={"round": self.number, "bank": self.bank.slug, "reason": reason},
        )


# --- sharing: mask keys ----------------------------------------------------------------------


def mask_key_submit(*, number: int, bank: Bank, post: MaskKeysPost, actor: str) -> MaskKey:
    """Store ``bank``'s advertised mask key and the share boxes it sealed to its peers."""
    caller = _Caller("mask_keys", bank, number, actor)
    with transaction.atomic():
        # Lock the round: the scheduler fixes U1 from the stored keys when it closes the
        # sharing phase under the same lock, so no key can land after U1 was read.
        rnd = _round_locked(caller)
        existing = secagg_selectors.mask_key_get(rnd, bank)
        if existing is not None:
            return _mask_key_retry(caller, existing, post)
        _phase_check(caller, rnd, RoundState.SHARING, "mask keys are taken only while it is")
        _member_check(caller, rnd.cohort, "cohort")
        _mask_key_fields_check(caller, post)
        message = mask_keys_message(
            _consortium_id(caller), number, bank.slug, post.mask_public_key, post.seed_commitment
        )
        _signature_check(caller, message, post.signature, "mask keys")
        _boxes_check(caller, post.shares, set(rnd.cohort) - {bank.slug})
        row = _mask_key_record(caller, rnd, post)
    metrics.secagg_message("mask_keys", "accepted")
    return row


def _mask_key_retry(caller: _Caller, existing: MaskKey, post: MaskKeysPost) -> MaskKey:
    stored = (existing.mask_public_key, existing.seed_commitment, existing.signature)
    if stored == (post.mask_public_key, post.seed_commitment, post.signature) and (
        existing.shares == post.shares
    ):
        return existing
    caller.refuse(
        "second different mask keys",
        Conflict(
            f"bank {caller.bank.slug} already posted its mask keys for round {caller.number}; "
            "different ones cannot replace them"
        ),
    )


def _mask_key_fields_check(caller: _Caller, post: MaskKeysPost) -> None:
    raw = _b64(post.mask_public_key)
    if raw is None or len(raw) != MASK_KEY_BYTES:
        caller.refuse(
            "bad mask public key",
            ApplicationError(
                "mask_public_key must be the base64 of a 32-byte X25519 public key",
                field="mask_public_key",
            ),
        )
    if not _HEX_64.fullmatch(post.seed_commitment):
        caller.refuse(
            "bad seed commitment",
            ApplicationError(
                "seed_commitment must be 64 lowercase hex characters "
                "(the SHA-256 commitment of he.recovery.seed_commitment)",
                field="seed_commitment",
            ),
        )


def _boxes_check(caller: _Caller, shares: dict[str, Any], expected: set[str]) -> None:
    """One box for each other cohort bank, and each box a plausible sealed share."""
    _owners_check(caller, "shares", shares, expected, "the other cohort banks")
    for recipient, box in sorted(shares.items()):
        raw = _b64(box)
        if raw is None or not MIN_SEALED_BYTES <= len(raw) <= MAX_SEALED_BYTES:
            size = "is not base64" if raw is None else f"is {len(raw)} bytes"
            caller.refuse(
                "bad share box",
                ApplicationError(
                    f"shares.{recipient}: a share box is the base64 of "
                    f"{MIN_SEALED_BYTES}..{MAX_SEALED_BYTES} sealed bytes; this one {size}",
                    field=f"shares.{recipient}",
                ),
            )


def _mask_key_record(caller: _Caller, rnd: Round, post: MaskKeysPost) -> MaskKey:
    row = _create_once(
        caller,
        MaskKey,
        round=rnd,
        bank=caller.bank,
        mask_public_key=post.mask_public_key,
        seed_commitment=post.seed_commitment,
        signature=post.signature,
        shares=post.shares,
    )
    # The boxes stay out of the trail: the key, commitment and signature are what is signed.
    audit_record(
        action="mask_keys.accepted",
        actor=caller.actor,
        target=row,
        data={
            "round": caller.number,
            "bank": caller.bank.slug,
            "mask_public_key": post.mask_public_key,
            "seed_commitment": post.seed_commitment,
            "signature": post.signature,
            "recipients": sorted(post.shares),
        },
    )
    return row


# --- unmasking: reveals ----------------------------------------------------------------------


def reveal_submit(*, number: int, bank: Bank, reveal: Reveal, actor: str) -> ShareReveal:
    """Store a survivor's signed reveal of the dropped banks' key shares and the seed shares."""
    caller = _Caller("reveal", bank, number, actor)
    with transaction.atomic():
        # Lock the round: the scheduler counts the reveals when it closes the unmasking
        # phase under the same lock, so a reveal cannot land after they were counted.
        rnd = _round_locked(caller)
        existing = secagg_selectors.reveal_get(rnd, bank)
        if existing is not None:
            return _reveal_retry(caller, existing, reveal)
        _phase_check(caller, rnd, RoundState.UNMASKING, "reveals are taken only while it is")
        _member_check(caller, rnd.survivors, "survivors")
        _reveal_request_check(caller, rnd, reveal)
        _reveal_shares_check(caller, rnd, reveal)
        message = reveal.message(_consortium_id(caller), number)
        _signature_check(caller, message, reveal.signature, "reveal")
        row = _reveal_record(caller, rnd, reveal)
    metrics.secagg_message("reveal", "accepted")
    return row


def _reveal_retry(caller: _Caller, existing: ShareReveal, reveal: Reveal) -> ShareReveal:
    if existing.body == reveal.to_dict():
        return existing
    caller.refuse(
        "second different reveal",
        Conflict(
            f"bank {caller.bank.slug} already revealed its shares for round {caller.number}; "
            "a different reveal cannot replace it"
        ),
    )


def _reveal_request_check(caller: _Caller, rnd: Round, reveal: Reveal) -> None:
    """The reveal is the caller's own and answers the round's one unmask request."""
    if reveal.bank != caller.bank.slug:
        caller.refuse(
            "reveal of another bank",
            Forbidden(
                f"this reveal names bank {reveal.bank!r}; bank {caller.bank.slug} may only "
                "send its own",
                field="bank",
            ),
        )
    asked = (sorted(rnd.survivors), sorted(rnd.dropped))
    if (sorted(reveal.survivors), sorted(reveal.dropped)) != asked:
        caller.refuse(
            "another request",
            Conflict(
                f"the reveal answers another request: round {caller.number} asks with survivors "
                f"{asked[0]} and dropped {asked[1]} (GET rounds/{caller.number}/unmask)",
                survivors=asked[0],
                dropped=asked[1],
            ),
        )


def _reveal_shares_check(caller: _Caller, rnd: Round, reveal: Reveal) -> None:
    """Key shares of exactly the dropped banks, seed shares of exactly the survivors."""
    _owners_check(caller, "key_shares", reveal.key_shares, set(rnd.dropped), "the dropped banks")
    _owners_check(caller, "seed_shares", reveal.seed_shares, set(rnd.survivors), "the survivors")
    for name, shares in (("key_shares", reveal.key_shares), ("seed_shares", reveal.seed_shares)):
        for owner, text in sorted(shares.items()):
            problem = _share_problem(text)
            if problem is not None:
                caller.refuse(
                    "bad share",
                    ApplicationError(f"{name}.{owner}: {problem}", field=f"{name}.{owner}"),
                )


def _share_problem(text: str) -> str | None:
    raw = _b64(text)
    if raw is None:
        return "a share is base64 (he.shamir.Share.to_bytes)"
    try:
        Share.from_bytes(raw)
    except HEError as exc:
        return str(exc)
    return None


def _reveal_record(caller: _Caller, rnd: Round, reveal: Reveal) -> ShareReveal:
    body = reveal.to_dict()
    row = _create_once(caller, ShareReveal, round=rnd, bank=caller.bank, body=body)
    audit_record(
        action="reveal.accepted",
        actor=caller.actor,
        target=row,
        data={
            "round": caller.number,
            "bank": caller.bank.slug,
            "survivors": sorted(reveal.survivors),
            "dropped": sorted(reveal.dropped),
            "signature": reveal.signature,
            # The shares themselves go to the manifest; the trail pins what was stored.
            "body_sha256": hashlib.sha256(_canonical(body)).hexdigest(),
        },
    )
    return row


# --- shared checks ---------------------------------------------------------------------------


def _round_locked(caller: _Caller) -> Round:
    rnd = Round.objects.select_for_update().filter(number=caller.number).first()
    if rnd is None:
        caller.refuse("no such round", NotFound(f"round {caller.number} does not exist"))
    if not secagg_selectors.round_is_masked(rnd):
        caller.refuse(
            "not a v2 round",
            Conflict(
                f"round {caller.number} runs secure aggregation v1: it takes no mask keys "
                "and no reveals"
            ),
        )
    return rnd


def _phase_check(caller: _Caller, rnd: Round, state: RoundState, rule: str) -> None:
    if rnd.state != state:
        caller.refuse(
            f"round {rnd.state}",
            Conflict(f"round {rnd.number} is {rnd.state}; {rule} {state.value}", state=rnd.state),
        )
    # Until the scheduler's next tick closes the phase the round still reads as open; the
    # deadline is what the banks were promised, as for uploads.
    if rnd.phase_deadline_at is not None and timezone.now() >= rnd.phase_deadline_at:
        caller.refuse(
            "after deadline",
            Conflict(
                f"round {rnd.number}'s {state.value} phase passed its deadline at "
                f"{rnd.phase_deadline_at.isoformat()}"
            ),
        )


def _member_check(caller: _Caller, members: Iterable[str], what: str) -> None:
    names = sorted(members)
    if caller.bank.slug not in names:
        caller.refuse(
            f"not in the {what}",
            Forbidden(
                f"bank {caller.bank.slug} is not among round {caller.number}'s {what} "
                f"({', '.join(names) or 'none'})"
            ),
        )


def _owners_check(
    caller: _Caller, name: str, given: dict[str, Any], expected: set[str], whom: str
) -> None:
    missing, extra = sorted(expected - set(given)), sorted(set(given) - expected)
    if missing or extra:
        caller.refuse(
            f"wrong {name} owners",
            ApplicationError(
                f"{name} must be keyed by exactly {whom}: missing {missing}, not allowed {extra}",
                field=name,
                missing=missing,
                extra=extra,
            ),
        )


def _consortium_id(caller: _Caller) -> str:
    state = roster.roster_state()
    if state is None:
        caller.refuse(
            "no roster",
            Conflict("a v2 round needs the banks' signed roster, and none is in force"),
        )
    return state.consortium_id


def _signature_check(caller: _Caller, message: bytes, signature: str, what: str) -> None:
    key = roster.roster_signing_key(caller.bank.slug)
    if key is None:
        caller.refuse(
            "not a roster member",
            Forbidden(f"bank {caller.bank.slug} is not an active member of the signed roster"),
        )
    if not verify(key, message, signature):
        caller.refuse(
            "bad signature",
            Forbidden(
                f"the signature does not verify with bank {caller.bank.slug}'s roster signing "
                f"key over its {what} for round {caller.number} (protocol/secagg.py)",
                field="signature",
            ),
        )


def _create_once(caller: _Caller, model: Any, **fields: Any) -> Any:
    try:
        with transaction.atomic():
            return model.objects.create(**fields)
    except IntegrityError:
        # Two first posts raced (possible only where row locks are not, as on SQLite).
        raise Conflict(
            f"bank {caller.bank.slug} already sent its {caller.kind} for round {caller.number}"
        ) from None


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None

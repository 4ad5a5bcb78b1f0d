"""The node's side of secure aggregation v2: round secrets, mask keys, masked upload, reveal.

Pure protocol logic over what ``BankClient`` returned (no HTTP here), following the round
protocol of ``docs/secure-aggregation.md`` (SecAgg, Bonawitz et al. CCS 2017, with the
malicious-server signatures of its section 6). Every key the node trusts comes from its
verified roster; anything the portal sends that does not fit raises ``Refused``.

A round's secrets live in ``bank_node/secagg_state.py`` (0600, made before anything is
sent, reused after a restart).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from bank_node.checks import Refused
from bank_node.secagg_state import RoundFile, b64, round_file, save_round_file
from governance import RosterState
from he.errors import HEError
from he.masking import MaskTerm, RoundBinding, pairwise_terms, public_bytes
from he.recovery import RoundSecrets, check_reveal, deal_shares, key_share, seed_share
from he.recovery import seed_commitment as commit_seed
from he.ring import SealKit
from he.seeded import Masker, encrypt_vector2, masker_for
from he.sharebox import open_share, seal_share
from he.signing import sign, verify
from protocol import (
    AdvertisedKey,
    CohortKeys,
    MaskKeysPost,
    ProtocolError,
    Reveal,
    RoundInfo,
    UnmaskRequest,
    mask_keys_message,
    secagg_threshold,
)

_HEX64 = re.compile(r"[0-9a-f]{64}")


def unb64(text: str, what: str) -> bytes:
    """Decode base64 from the portal; a ``Refused`` naming ``what`` when it is not base64."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Refused("secagg_keys", f"{what} is not valid base64") from None


@dataclass(frozen=True)
class Me:
    """This bank as secure aggregation needs it: its slug and its two roster private keys."""

    bank: str
    signing_key: Ed25519PrivateKey
    agreement_key: X25519PrivateKey = field(repr=False)


# --- what the roster says about a round ------------------------------------------------------


def roster_cohort(roster: RosterState) -> tuple[str, ...]:
    """The cohort of a v2 round: the roster's active members, sorted."""
    return tuple(sorted(m.bank_id for m in roster.active_members()))


def round_threshold(roster: RosterState, rnd: RoundInfo) -> int:
    """Shares needed, from the node's own roster: majority of the cohort, at least min_banks."""
    floor = max(rnd.policy.min_banks, roster.min_banks)
    return secagg_threshold(len(roster_cohort(roster)), floor)


def round_binding(roster: RosterState, rnd: RoundInfo) -> RoundBinding:
    return RoundBinding(roster.consortium_id, rnd.number, rnd.key_epoch)


def agreement_public(roster: RosterState, bank: str) -> X25519PublicKey:
    """A member's roster X25519 key (roster keys were checked when the version verified)."""
    member = roster.member(bank)
    if member is None:
        raise Refused("secagg_cohort", f"bank {bank!r} is not on the roster")
    return X25519PublicKey.from_public_bytes(base64.b64decode(member.agreement_key))


def mask_public(key: AdvertisedKey) -> X25519PublicKey:
    """An advertised mask public key; ``Refused`` when it is not a raw X25519 key."""
    raw = unb64(key.mask_public_key, f"the mask key of {key.bank!r}")
    if len(raw) != 32:
        raise Refused("secagg_keys", f"the mask key of {key.bank!r} is not 32 bytes")
    return X25519PublicKey.from_public_bytes(raw)


def check_advertised(
    roster: RosterState, number: int, keys: tuple[AdvertisedKey, ...], cohort: tuple[str, ...]
) -> None:
    """Every advertised key: a cohort bank, once, signed under its roster key, well formed."""
    seen: set[str] = set()
    for key in keys:
        if key.bank not in cohort:
            raise Refused(
                "secagg_cohort",
                f"round {number}: {key.bank!r} advertised a mask key outside the cohort",
            )
        if key.bank in seen:
            raise Refused("secagg_keys", f"round {number}: {key.bank!r} advertised twice")
        seen.add(key.bank)
        # Shape first: the signed message refuses a newline, which base64 and hex exclude.
        mask_public(key)
        if not _HEX64.fullmatch(key.seed_commitment):
            raise Refused(
                "secagg_keys", f"round {number}: {key.bank!r}'s seed commitment is not 64 hex"
            )
        signer = roster.signing_key_of(key.bank)
        message = key.message(roster.consortium_id, number)
        if signer is None or not verify(signer, message, key.signature):
            raise Refused(
                "mask_key_signature",
                f"round {number}: the mask key advertised for {key.bank!r} is not signed "
                "under its roster key",
            )


def check_cohort(roster: RosterState, number: int, cohort: tuple[str, ...]) -> None:
    """The round's cohort must be exactly the roster's active members."""
    expected = roster_cohort(roster)
    if tuple(sorted(cohort)) != expected or len(set(cohort)) != len(cohort):
        raise Refused(
            "secagg_cohort",
            f"round {number}: the cohort {sorted(cohort)} is not the roster's active members "
            f"{list(expected)} (roster version {roster.version})",
        )


# --- sharing --------------------------------------------------------------------------------


def mask_keys_post(roster: RosterState, rnd: RoundInfo, me: Me, state_dir: Path) -> MaskKeysPost:
    """This bank's mask key, seed commitment and share boxes; made once, then reused."""
    rf = round_file(state_dir, rnd.number)
    if rf.post is not None:
        return MaskKeysPost.from_dict(rf.post)
    cohort = roster_cohort(roster)
    if me.bank not in cohort:
        raise Refused("secagg_cohort", f"round {rnd.number}: {me.bank!r} is not an active member")
    binding = round_binding(roster, rnd)
    secrets = rf.secrets()
    try:
        payloads = deal_shares(secrets, cohort, round_threshold(roster, rnd))
    except HEError as exc:
        raise Refused("secagg_keys", f"round {rnd.number}: cannot deal shares: {exc}") from None
    boxes = {
        peer: b64(
            seal_share(
                me.agreement_key, me.bank, agreement_public(roster, peer), peer, payload, binding
            )
        )
        for peer, payload in payloads.items()
        if peer != me.bank
    }
    mask_key = b64(public_bytes(secrets.agreement))
    commitment = commit_seed(secrets.self_seed, binding, me.bank)
    message = mask_keys_message(roster.consortium_id, rnd.number, me.bank, mask_key, commitment)
    post = MaskKeysPost(mask_key, commitment, sign(me.signing_key, message), boxes)
    rf.own_share, rf.post = b64(payloads[me.bank]), post.to_dict()
    save_round_file(state_dir, rf)
    return post


# --- masked upload --------------------------------------------------------------------------


def check_cohort_keys(roster: RosterState, rnd: RoundInfo, keys: CohortKeys, bank: str) -> None:
    """The final cohort keys of an open round, before this bank masks towards them."""
    number = rnd.number
    if keys.round != number or not keys.final:
        raise Refused(
            "secagg_keys", f"round {number}: the portal sent non-final keys or another round's"
        )
    check_cohort(roster, number, keys.cohort)
    threshold = round_threshold(roster, rnd)
    if keys.threshold != threshold:
        raise Refused(
            "secagg_keys",
            f"round {number}: the portal's threshold {keys.threshold} is not {threshold}",
        )
    check_advertised(roster, number, keys.keys, roster_cohort(roster))
    u1 = set(keys.banks)
    if len(u1) < threshold or bank not in u1:
        raise Refused(
            "secagg_keys",
            f"round {number}: {len(u1)} bank(s) advertised a mask key (threshold {threshold}); "
            f"this bank {'is' if bank in u1 else 'is not'} among them",
        )
    boxes = {sender for sender, box in keys.shares_for_you.items() if isinstance(box, str)}
    missing = sorted(u1 - {bank} - boxes)
    if missing:
        raise Refused("secagg_keys", f"round {number}: no share box relayed from {missing}")


def adopt_cohort_keys(
    roster: RosterState, rnd: RoundInfo, keys: CohortKeys, bank: str, state_dir: Path
) -> None:
    """Check the final keys name this bank's own mask key, and keep them for the unmasking.

    The unmask request is later checked against exactly this U1; final keys that change
    between two polls are refused.
    """
    rf = round_file(state_dir, rnd.number)
    _check_own_key(keys, bank, rf.secrets(), round_binding(roster, rnd))
    if rf.cohort_keys is not None and CohortKeys.from_dict(rf.cohort_keys) != keys:
        raise Refused("secagg_keys", f"round {rnd.number}: the final cohort keys changed")
    rf.cohort_keys = keys.to_dict()
    save_round_file(state_dir, rf)


def mask_terms(
    roster: RosterState, rnd: RoundInfo, bank: str, keys: CohortKeys, state_dir: Path
) -> tuple[list[MaskTerm], RoundBinding]:
    """This bank's masks towards U1 (pairwise and its self-mask) and what they are bound to."""
    secrets = round_file(state_dir, rnd.number).secrets()
    binding = round_binding(roster, rnd)
    peers = {k.bank: mask_public(k) for k in keys.keys}
    terms = [*pairwise_terms(secrets.agreement, bank, peers, binding), secrets.self_term(bank)]
    return terms, binding


def masked_update(
    kit: SealKit,
    values: np.ndarray,
    roster: RosterState,
    rnd: RoundInfo,
    bank: str,
    keys: CohortKeys,
    out: Path,
    state_dir: Path,
    masker: Masker | None = None,
) -> str:
    """Mask ``values`` towards U1, encrypt v2 to ``out``; its digest.

    ``masker`` is the masks computed ahead (``he.premask``); without it they are derived
    chunk by chunk as the encryption goes.
    """
    if masker is None:
        terms, binding = mask_terms(roster, rnd, bank, keys, state_dir)
        masker = masker_for(kit, terms, binding)
    with open(out, "wb") as stream:
        return encrypt_vector2(kit, values, rnd.key_epoch, stream, masker)


def _check_own_key(
    keys: CohortKeys, bank: str, secrets: RoundSecrets, binding: RoundBinding
) -> None:
    mine = next(k for k in keys.keys if k.bank == bank)
    own = b64(public_bytes(secrets.agreement))
    if (mine.mask_public_key, mine.seed_commitment) != (
        own,
        commit_seed(secrets.self_seed, binding, bank),
    ):
        raise Refused(
            "secagg_keys",
            f"round {binding.round}: the portal advertises another mask key for {bank!r}",
        )


# --- unmasking ------------------------------------------------------------------------------


def answer_unmask(
    roster: RosterState, rnd: RoundInfo, me: Me, request: UnmaskRequest, state_dir: Path
) -> Reveal:
    """The signed reveal for ``request``; at most one per round (the same request, same answer)."""
    number = rnd.number
    try:
        check_reveal(request.dropped, request.survivors)
    except HEError as exc:
        raise Refused("unmask_both_ways", f"round {number}: {exc}") from None
    if request.round != number:
        raise Refused("unmask_request", f"round {number}: the unmask request is for another round")
    survivors, dropped = tuple(sorted(request.survivors)), tuple(sorted(request.dropped))
    rf = round_file(state_dir, number)
    if rf.reveal is not None:
        return _same_reveal(Reveal.from_dict(rf.reveal), survivors, dropped, number)
    if rf.cohort_keys is None:
        raise Refused("unmask_request", f"round {number}: this bank uploaded nothing to unmask")
    keys = CohortKeys.from_dict(rf.cohort_keys)
    _check_request(request, number, keys.banks, round_threshold(roster, rnd), me.bank)
    reveal = _reveal(roster, rnd, me, rf, keys, survivors, dropped)
    rf.reveal = reveal.to_dict()
    save_round_file(state_dir, rf)
    return reveal


def _same_reveal(
    stored: Reveal, survivors: tuple[str, ...], dropped: tuple[str, ...], number: int
) -> Reveal:
    if (tuple(sorted(stored.survivors)), tuple(sorted(stored.dropped))) == (survivors, dropped):
        return stored
    raise Refused(
        "unmask_changed",
        f"round {number}: already answered survivors {list(stored.survivors)} / dropped "
        f"{list(stored.dropped)}; refusing a second, different request (survivors "
        f"{list(survivors)} / dropped {list(dropped)})",
    )


def _check_request(
    request: UnmaskRequest, number: int, u1: tuple[str, ...], threshold: int, bank: str
) -> None:
    survivors, dropped = set(request.survivors), set(request.dropped)
    problems = [
        (
            len(survivors) != len(request.survivors) or len(dropped) != len(request.dropped),
            "names a bank twice",
        ),
        (not survivors <= set(u1), f"names survivors outside U1 {sorted(u1)}"),
        (dropped != set(u1) - survivors, "does not drop exactly U1 minus the survivors"),
        (len(survivors) < threshold, f"has {len(survivors)} survivor(s), fewer than {threshold}"),
        (bank not in survivors, f"does not name {bank!r} a survivor"),
    ]
    for failed, what in problems:
        if failed:
            raise Refused("unmask_request", f"round {number}: the unmask request {what}")


def _reveal(
    roster: RosterState,
    rnd: RoundInfo,
    me: Me,
    rf: RoundFile,
    keys: CohortKeys,
    survivors: tuple[str, ...],
    dropped: tuple[str, ...],
) -> Reveal:
    binding = round_binding(roster, rnd)

    def payload(sender: str) -> bytes:
        if sender == me.bank:
            return base64.b64decode(rf.own_share)
        box = unb64(str(keys.shares_for_you.get(sender, "")), f"the share box from {sender!r}")
        try:
            return open_share(
                me.agreement_key, me.bank, agreement_public(roster, sender), sender, box, binding
            )
        except HEError as exc:
            raise Refused("share_unreadable", f"round {rnd.number}: {exc}") from None

    try:
        key_shares = {d: b64(key_share(payload(d)).to_bytes()) for d in dropped}
        seed_shares = {s: b64(seed_share(payload(s)).to_bytes()) for s in survivors}
    except (HEError, ProtocolError) as exc:
        raise Refused("share_unreadable", f"round {rnd.number}: a share payload: {exc}") from None
    unsigned = Reveal(me.bank, survivors, dropped, key_shares, seed_shares)
    signature = sign(me.signing_key, unsigned.message(roster.consortium_id, rnd.number))
    return dataclasses.replace(unsigned, signature=signature)

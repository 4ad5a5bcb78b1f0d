"""Secure aggregation v2 at aggregation: rebuild the revealed secrets, sum with the correction.

For every dropped bank the survivors revealed shares of its round mask key, for every
survivor shares of its self-mask seed (``docs/secure-aggregation.md``). Any ``threshold``
of them rebuild a secret, which is then checked: a mask key against the bank's advertised
public key, a seed against its signed commitment. Fewer than a threshold of *correct*
shares rebuild a wrong value, not an error, so when the first subset fails other subsets
are tried (a bounded number) and the reveals that disagree with the checked value are
named. The correction that cancels the dropped banks' pair masks and the survivors'
self-masks is added to the sum of the survivors' uploads, under the epoch's public context.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable
from itertools import combinations, islice
from pathlib import Path
from typing import BinaryIO, TypeVar

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from audit.services import audit_record
from consortium.governance import selectors as roster
from consortium.rounds.crypto import epoch_kit
from consortium.rounds.models import MaskKey, Round
from consortium.rounds.selectors_secagg import mask_key_list, share_reveal_list
from he.errors import HEError
from he.masking import MaskTerm, RoundBinding
from he.recovery import (
    check_self_seed,
    dropout_terms,
    recover_agreement_key,
    recover_self_seed,
    self_mask_terms,
)
from he.seeded import masker_for, sum_vectors2
from he.shamir import Share
from protocol import AdvertisedKey, ProtocolError, Reveal, SecAggRecord

log = logging.getLogger(__name__)

# Subsets of the reveals tried per secret: bounds the work wrong shares can cause (with one
# wrong share among t + 1, the second subset tried already leaves it out).
MAX_SUBSETS = 32

T = TypeVar("T")
Check = Callable[[list[Share]], T]
Blame = dict[str, list[str]]  # revealer -> what its shares failed to rebuild


class UnmaskFailed(Exception):
    """A revealed secret cannot be rebuilt; the message names the banks concerned."""


def secagg_sum(rnd: Round, paths: list[Path], out: BinaryIO) -> tuple[str, SecAggRecord]:
    """Sum the survivors' uploads with the correction; the digest and the manifest's record.

    Raises :class:`UnmaskFailed` when a dropped bank's mask key or a survivor's seed cannot
    be rebuilt from the stored reveals, HEError when the uploads cannot be summed.
    """
    consortium = _consortium_id()
    binding = RoundBinding(consortium, rnd.number, rnd.key_epoch.fingerprint)
    keys = {k.bank.slug: k for k in mask_key_list(rnd)}
    reveals, blame = _reveals(rnd)
    terms = _correction(rnd, keys, reveals, binding, blame)
    if blame:
        _blame_record(rnd, blame)
    kit = epoch_kit(rnd.key_epoch)
    digest = sum_vectors2(paths, kit, out, correction=masker_for(kit, terms, binding))
    record = SecAggRecord(
        consortium=consortium,
        threshold=rnd.threshold or 0,
        cohort=tuple(rnd.cohort),
        keys=tuple(_advertised(k) for _, k in sorted(keys.items())),
        survivors=tuple(rnd.survivors),
        dropped=tuple(rnd.dropped),
        reveals=tuple(reveals),
    )
    return digest, record


def _consortium_id() -> str:
    state = roster.roster_state()
    if state is None:
        raise UnmaskFailed(
            "no signed roster is stored any more: the consortium id the masks are bound to "
            "is unknown"
        )
    return state.consortium_id


def _advertised(key: MaskKey) -> AdvertisedKey:
    return AdvertisedKey(key.bank.slug, key.mask_public_key, key.seed_commitment, key.signature)


def _reveals(rnd: Round) -> tuple[list[Reveal], Blame]:
    """The stored reveals that answer this round's request, and who sent one that does not."""
    good: list[Reveal] = []
    blame: Blame = {}
    for row in share_reveal_list(rnd):
        slug = row.bank.slug
        try:
            reveal = Reveal.from_dict(row.body)
        except ProtocolError as exc:
            blame[slug] = [f"a malformed reveal ({exc})"]
            continue
        answers = (
            reveal.bank == slug
            and slug in rnd.survivors
            and sorted(reveal.survivors) == sorted(rnd.survivors)
            and sorted(reveal.dropped) == sorted(rnd.dropped)
        )
        if answers:
            good.append(reveal)
        else:
            blame[slug] = ["a reveal that answers another unmask request"]
    return good, blame


def _correction(
    rnd: Round,
    keys: dict[str, MaskKey],
    reveals: list[Reveal],
    binding: RoundBinding,
    blame: Blame,
) -> list[MaskTerm]:
    """``-(dropped banks' pair masks towards the survivors) - (survivors' self-masks)``."""
    threshold = rnd.threshold or 0
    survivors = {s: _public(s, keys[s]) for s in rnd.survivors}
    terms: list[MaskTerm] = []
    for bank in rnd.dropped:
        shares = {r.bank: r.key_shares.get(bank) for r in reveals}
        check = _key_check(base64.b64decode(keys[bank].mask_public_key))
        key = _rebuild(bank, "round mask key", shares, threshold, check, blame)
        terms += dropout_terms(bank, key, survivors, binding)
    seeds = {}
    for bank in rnd.survivors:
        shares = {r.bank: r.seed_shares.get(bank) for r in reveals}
        check_seed = _seed_check(keys[bank].seed_commitment, binding, bank)
        seeds[bank] = _rebuild(bank, "self-mask seed", shares, threshold, check_seed, blame)
    return terms + self_mask_terms(seeds)


def _public(bank: str, key: MaskKey) -> X25519PublicKey:
    try:
        return X25519PublicKey.from_public_bytes(base64.b64decode(key.mask_public_key))
    except ValueError:
        raise UnmaskFailed(f"{bank}'s advertised mask key is not an X25519 public key") from None


def _key_check(expected_public: bytes) -> Check[X25519PrivateKey]:
    return lambda shares: recover_agreement_key(shares, expected_public)


def _seed_check(commitment: str, binding: RoundBinding, bank: str) -> Check[bytes]:
    return lambda shares: check_self_seed(recover_self_seed(shares), commitment, binding, bank)


def _rebuild(
    owner: str,
    what: str,
    texts: dict[str, str | None],
    threshold: int,
    check: Check[T],
    blame: Blame,
) -> T:
    """The checked secret from some ``threshold`` of the shares; blames those that disagree."""
    shares = _parse_shares(texts, f"{owner}'s {what}", blame)
    names = sorted(shares)
    if len(names) < threshold:
        raise UnmaskFailed(
            f"{owner}'s {what} cannot be rebuilt: {len(names)} usable shares of the "
            f"{threshold} needed{_blamed(blame, texts)}"
        )
    for subset in islice(combinations(names, threshold), MAX_SUBSETS):
        value = _attempt(check, [shares[n] for n in subset])
        if value is None:
            continue
        others = [shares[n] for n in subset[1:]]
        for name in names:
            if name not in subset and _attempt(check, [shares[name], *others]) is None:
                blame.setdefault(name, []).append(f"a wrong share of {owner}'s {what}")
        return value
    raise UnmaskFailed(
        f"no {threshold} of the shares revealed by {', '.join(names)} rebuild {owner}'s "
        f"{what} (checked against what {owner} advertised): at least one of them revealed "
        "a wrong share"
    )


def _parse_shares(texts: dict[str, str | None], what: str, blame: Blame) -> dict[str, Share]:
    shares = {}
    for revealer, text in sorted(texts.items()):
        try:
            shares[revealer] = Share.from_bytes(base64.b64decode(text or "", validate=True))
        except (ValueError, HEError):
            blame.setdefault(revealer, []).append(f"no readable share of {what}")
    return shares


def _blamed(blame: Blame, among: Iterable[str]) -> str:
    named = sorted(set(blame) & set(among))
    return f" (unusable from {', '.join(named)})" if named else ""


def _attempt(check: Check[T], shares: list[Share]) -> T | None:
    try:
        return check(shares)
    except HEError:
        return None


def _blame_record(rnd: Round, blame: Blame) -> None:
    """Name the revealers whose shares disagree; the round goes on if enough others agree."""
    named = {bank: sorted(set(what)) for bank, what in sorted(blame.items())}
    log.warning("round %s: reveals that disagree with the rebuilt secrets: %s", rnd.number, named)
    audit_record(
        action="round.reveals_disagreed",
        actor="scheduler",
        target=rnd,
        data={"round": rnd.number, "banks": named},
    )

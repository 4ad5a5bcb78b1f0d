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
from pathlib import Path
from typing import BinaryIO

from audit.services import audit_record
from consortium.governance import selectors as roster
from consortium.rounds.crypto import epoch_kit
from consortium.rounds.models import MaskKey, Round
from consortium.rounds.selectors_secagg import mask_key_list, share_reveal_list
from he.errors import HEError
from he.masking import MaskTerm, RoundBinding
from he.recovery import Advertised, Blame, Revealed, rebuild_correction
from he.seeded import masker_for, sum_vectors2
from protocol import AdvertisedKey, ProtocolError, Reveal, SecAggRecord

log = logging.getLogger(__name__)

# Subsets of the reveals tried per secret: bounds the work wrong shares can cause (with one
# wrong share among t + 1, the second subset tried already leaves it out).
MAX_SUBSETS = 32


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
    try:
        correction = rebuild_correction(
            advertised={bank: _advertised_secrets(bank, key) for bank, key in keys.items()},
            survivors=rnd.survivors,
            dropped=rnd.dropped,
            reveals=[Revealed(r.bank, r.key_shares, r.seed_shares) for r in reveals],
            threshold=rnd.threshold or 0,
            binding=binding,
            max_subsets=MAX_SUBSETS,
        )
    except HEError as exc:  # RecoveryFailed, or a bank without a usable mask key
        raise UnmaskFailed(str(exc)) from None
    for revealer, what in correction.blame.items():
        blame.setdefault(revealer, []).extend(what)
    return correction.terms


def _advertised_secrets(bank: str, key: MaskKey) -> Advertised:
    try:
        public = base64.b64decode(key.mask_public_key)
    except ValueError:
        raise UnmaskFailed(f"{bank}'s advertised mask key is not an X25519 public key") from None
    return Advertised(public, key.seed_commitment)


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

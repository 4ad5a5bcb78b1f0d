"""Four banks' nodes in a v2 round, and the portal's relaying done by hand (node tests only).

Each bank has its own state directory and its roster keys (``tests/governance``); the
"portal" here only relays what the nodes produce and sums, as the scheduler does, with the
public CKKS context: an independent copy of the maths, so the node's recompute is tested
against it rather than against itself.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from bank_node.secagg import (
    Me,
    adopt_cohort_keys,
    answer_unmask,
    check_cohort_keys,
    mask_keys_post,
    round_binding,
)
from governance import RosterState
from he.masking import MaskTerm
from he.recovery import dropout_terms, recover_agreement_key, recover_self_seed, self_mask_terms
from he.ring import SealKit
from he.seeded import masker_for, sum_vectors2
from he.shamir import Share
from he.signing import sign, update_message_v2
from protocol import (
    AdvertisedKey,
    CohortKeys,
    Manifest,
    ManifestInput,
    MaskKeysPost,
    Reveal,
    RoundInfo,
    SecAggRecord,
    UnmaskRequest,
)
from tests.governance.roster_helpers import Ceremony, found
from tests.protocol.messages import policy_dict, round_dict

BANKS = ("alpha", "beta", "gamma", "delta")
THRESHOLD = 3  # secagg_threshold(4, 3): a majority of four, and the roster's min_banks


def v2_round(number: int, epoch: str, **overrides: Any) -> RoundInfo:
    policy = policy_dict(secure_aggregation="v2", aggregate_checkers=0, min_banks=3)
    fields = {"number": number, "key_epoch": epoch, "policy": policy, "base_round": None}
    return RoundInfo.from_dict(round_dict(**(fields | overrides)))


@dataclass
class Federation:
    """The roster's four banks, each with its node's identity and state directory."""

    ceremony: Ceremony
    rnd: RoundInfo
    homes: dict[str, Path]
    posts: dict[str, MaskKeysPost]

    @property
    def roster(self) -> RosterState:
        return self.ceremony.state

    def me(self, bank: str) -> Me:
        held = self.ceremony[bank]
        return Me(bank, held.key, held.agreement)

    def advertised(self, bank: str) -> AdvertisedKey:
        post = self.posts[bank]
        return AdvertisedKey(bank, post.mask_public_key, post.seed_commitment, post.signature)

    def cohort_keys(self, bank: str, u1: tuple[str, ...]) -> CohortKeys:
        """What ``GET rounds/{n}/mask-keys`` gives ``bank`` once U1 is fixed."""
        boxes = {sender: self.posts[sender].shares[bank] for sender in u1 if sender != bank}
        keys = tuple(self.advertised(b) for b in u1)
        return CohortKeys(self.rnd.number, THRESHOLD, BANKS_SORTED, keys, boxes, True)

    def adopt(self, bank: str, keys: CohortKeys) -> None:
        """The node's checks of the final keys, as in the open phase."""
        check_cohort_keys(self.roster, self.rnd, keys, bank)
        adopt_cohort_keys(self.roster, self.rnd, keys, bank, self.homes[bank])

    def reveal(self, bank: str, survivors: tuple[str, ...], dropped: tuple[str, ...]) -> Reveal:
        request = UnmaskRequest(self.rnd.number, THRESHOLD, survivors, dropped)
        return answer_unmask(self.roster, self.rnd, self.me(bank), request, self.homes[bank])


BANKS_SORTED = tuple(sorted(BANKS))


def federation(tmp: Path, rnd_for: Any) -> Federation:
    """Found the roster, then every bank posts its mask keys for the round (phase sharing)."""
    ceremony = found()
    rnd = rnd_for(ceremony)
    homes = {b: tmp / b for b in BANKS}
    fed = Federation(ceremony, rnd, homes, {})
    fed.posts = {b: mask_keys_post(fed.roster, rnd, fed.me(b), homes[b]) for b in BANKS}
    return fed


def portal_correction(
    fed: Federation, reveals: list[Reveal], survivors: tuple[str, ...], dropped: tuple[str, ...]
) -> list[MaskTerm]:
    """The scheduler's correction from the first ``t`` reveals (he functions only)."""
    binding = round_binding(fed.roster, fed.rnd)
    used = reveals[:THRESHOLD]

    def shares(field: str, owner: str) -> list[Share]:
        return [Share.from_bytes(base64.b64decode(getattr(r, field)[owner])) for r in used]

    def public(bank: str) -> X25519PublicKey:
        return X25519PublicKey.from_public_bytes(base64.b64decode(fed.posts[bank].mask_public_key))

    terms: list[MaskTerm] = []
    for bank in dropped:
        expected = base64.b64decode(fed.posts[bank].mask_public_key)
        key = recover_agreement_key(shares("key_shares", bank), expected)
        terms += dropout_terms(bank, key, {s: public(s) for s in survivors}, binding)
    seeds = {s: recover_self_seed(shares("seed_shares", s)) for s in survivors}
    return terms + self_mask_terms(seeds)


def portal_sum(
    fed: Federation, kit: SealKit, uploads: dict[str, Path], terms: list[MaskTerm], out: Path
) -> str:
    binding = round_binding(fed.roster, fed.rnd)
    with open(out, "wb") as stream:
        paths = [uploads[b] for b in sorted(uploads)]
        return sum_vectors2(paths, kit, stream, masker_for(kit, terms, binding))


def manifest_for(
    fed: Federation,
    uploads: dict[str, Path],
    aggregate_digest: str,
    survivors: tuple[str, ...],
    dropped: tuple[str, ...],
    reveals: list[Reveal],
) -> Manifest:
    """The published manifest: signed inputs and the secure-aggregation record."""
    inputs = []
    for bank in survivors:
        digest = hashlib.sha256(uploads[bank].read_bytes()).hexdigest()
        message = update_message_v2(fed.rnd.number, bank, digest)
        inputs.append(ManifestInput(bank, digest, sign(fed.ceremony[bank].key, message)))
    u1 = tuple(sorted((*survivors, *dropped)))
    record = SecAggRecord(
        consortium=fed.roster.consortium_id,
        threshold=THRESHOLD,
        cohort=BANKS_SORTED,
        keys=tuple(fed.advertised(b) for b in u1),
        survivors=survivors,
        dropped=dropped,
        reveals=tuple(reveals),
    )
    return Manifest(
        round=fed.rnd.number,
        key_epoch=fed.rnd.key_epoch,
        aggregate_digest=aggregate_digest,
        inputs=tuple(inputs),
        secure_aggregation=record,
    )

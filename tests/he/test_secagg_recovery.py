"""Dropout recovery: Shamir shares, shares sealed to their recipient, masks of dropped banks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from he.codec import pack_update
from he.errors import HEError
from he.keys import load_public_context
from he.masking import MaskTerm, RoundBinding, pairwise_terms, public_bytes
from he.params import CkksParams
from he.recovery import (
    check_reveal,
    deal_shares,
    dropout_terms,
    key_share,
    recover_agreement_key,
    recover_self_seed,
    seed_share,
    self_mask_terms,
)
from he.ring import SealKit, kit_from_tenseal
from he.seeded import masker_for
from he.shamir import Share, combine, split
from he.sharebox import ShareUnreadable, open_share, seal_share
from tests.he.secagg_support import Cohort, decrypted_sum, upload, write_all

pytestmark = pytest.mark.filterwarnings("ignore")
PARAMS = CkksParams()
THRESHOLD = 3


@pytest.fixture(scope="module")
def kits(ckks) -> tuple[SealKit, SealKit]:
    public = load_public_context(ckks.public_bytes, PARAMS)
    return kit_from_tenseal(ckks.secret, PARAMS), kit_from_tenseal(public, PARAMS)


@pytest.fixture(scope="module")
def binding(ckks) -> RoundBinding:
    return RoundBinding("consortium-test", 3, ckks.fingerprint)


@pytest.mark.parametrize("size", [16, 32])
def test_any_threshold_of_the_shares_rebuilds_the_secret(size: int):
    secret = os.urandom(size)
    shares = split(secret, 3, 5)
    for chosen in ([0, 1, 2], [4, 2, 0], [1, 3, 4], [0, 1, 2, 3, 4]):
        assert combine([shares[i] for i in chosen], size) == secret


def test_fewer_shares_than_the_threshold_do_not_rebuild_the_secret():
    secret = os.urandom(32)
    shares = split(secret, 3, 5)
    assert combine(shares[:2], 32) != secret
    assert combine(shares[3:], 32) != secret


@pytest.mark.parametrize(
    ("secret", "threshold", "holders", "reason"),
    [
        (bytes(24), 2, 3, "16 or 32"),
        (bytes(32), 1, 3, "threshold"),
        (bytes(32), 4, 3, "threshold"),
    ],
)
def test_splitting_refuses_bad_sizes_and_thresholds(secret, threshold, holders, reason):
    with pytest.raises(HEError, match=reason):
        split(secret, threshold, holders)


def test_a_share_round_trips_through_bytes_and_a_malformed_one_is_refused():
    share = split(bytes(16), 2, 2)[1]
    assert Share.from_bytes(share.to_bytes()) == share
    with pytest.raises(HEError, match="bytes"):
        Share.from_bytes(share.to_bytes()[:-1])
    with pytest.raises(HEError, match="index"):
        Share.from_bytes(b"\0\0" + share.to_bytes()[2:])
    with pytest.raises(HEError, match="distinct"):
        combine([share, share], 16)


def test_a_share_sealed_to_one_bank_opens_for_it_and_for_no_other(binding):
    cohort = Cohort.of(3, binding)
    a, b, c = (cohort.secrets[x].agreement for x in cohort.ids)
    sealed = seal_share(a, "bank-00", b.public_key(), "bank-01", b"payload", binding)
    assert open_share(b, "bank-01", a.public_key(), "bank-00", sealed, binding) == b"payload"
    with pytest.raises(ShareUnreadable, match="cannot be opened by bank-02"):
        open_share(c, "bank-02", a.public_key(), "bank-00", sealed, binding)


def test_a_sealed_share_redirected_altered_or_replayed_is_refused(binding):
    cohort = Cohort.of(3, binding)
    a, b, c = (cohort.secrets[x].agreement for x in cohort.ids)
    sealed = seal_share(a, "bank-00", b.public_key(), "bank-01", b"payload", binding)
    later = RoundBinding(binding.consortium, binding.round + 1, binding.epoch)
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    attempts = [
        (b, "bank-01", c.public_key(), "bank-02", sealed, binding),  # claims another sender
        (b, "bank-01", a.public_key(), "bank-00", flipped, binding),
        (b, "bank-01", a.public_key(), "bank-00", sealed, later),
        (b, "bank-01", a.public_key(), "bank-00", sealed[:10], binding),
    ]
    for attempt in attempts:
        with pytest.raises(ShareUnreadable):
            open_share(*attempt)


def _deal_and_relay(cohort: Cohort) -> dict[tuple[str, str], bytes]:
    """Round start: every bank seals a payload to every bank; the portal only relays them."""
    ids = cohort.ids
    relayed = {}
    for dealer in ids:
        own = cohort.secrets[dealer]
        for holder, payload in deal_shares(own, ids, THRESHOLD).items():
            public = cohort.secrets[holder].agreement.public_key()
            relayed[(dealer, holder)] = seal_share(
                own.agreement, dealer, public, holder, payload, cohort.binding
            )
    return relayed


def _opened(cohort: Cohort, relayed: dict[tuple[str, str], bytes], dealer: str, holder: str):
    own = cohort.secrets[holder].agreement
    dealer_key = cohort.secrets[dealer].agreement.public_key()
    return open_share(own, holder, dealer_key, dealer, relayed[(dealer, holder)], cohort.binding)


def _correction_terms(cohort, relayed, dropped: list[str], survivors: list[str]):
    check_reveal(dropped, survivors)
    revealers = survivors[:THRESHOLD]  # only a threshold of survivors need to answer
    terms = []
    for bank in dropped:
        shares = [key_share(_opened(cohort, relayed, bank, h)) for h in revealers]
        roster_key = public_bytes(cohort.secrets[bank].agreement)
        key = recover_agreement_key(shares, roster_key)
        terms += dropout_terms(bank, key, cohort.publics(survivors), cohort.binding)
    seeds = {
        bank: recover_self_seed([seed_share(_opened(cohort, relayed, bank, h)) for h in revealers])
        for bank in survivors
    }
    return terms + self_mask_terms(seeds)


@pytest.mark.parametrize(
    "dropped", [["bank-03"], ["bank-01", "bank-03"]], ids=["one dropout", "n - min_banks dropouts"]
)
def test_dropped_banks_masks_are_removed_and_the_survivors_sum_is_exact(
    kits, binding, tmp_path: Path, dropped: list[str]
):
    secret, public = kits
    cohort = Cohort.of(5, binding)
    relayed = _deal_and_relay(cohort)
    rng = np.random.default_rng(9)
    packed = {
        b: pack_update(rng.normal(0, 0.1, 5000), 100 + i, 1.5) for i, b in enumerate(cohort.ids)
    }
    survivors = [b for b in cohort.ids if b not in dropped]
    blobs = [upload(secret, packed[b], cohort.terms(b, self_mask=True), cohort) for b in survivors]
    terms = _correction_terms(cohort, relayed, dropped, survivors)
    paths = write_all(blobs, tmp_path)
    total = decrypted_sum(secret, public, paths, masker_for(public, terms, binding))
    plain = np.sum([packed[b] for b in survivors], axis=0)
    assert np.linalg.norm(total - plain) / np.linalg.norm(plain) < 1e-6
    uncorrected = decrypted_sum(secret, public, paths)
    assert np.max(np.abs(uncorrected - plain)) > 1e6


def test_a_late_upload_of_a_dropped_bank_stays_masked_by_its_self_mask(kits, binding, tmp_path):
    secret, public = kits
    cohort = Cohort.of(4, binding)
    relayed = _deal_and_relay(cohort)
    late = pack_update(np.random.default_rng(2).normal(0, 0.1, 3000), 50, 1.5)
    blob = upload(secret, late, cohort.terms("bank-02", self_mask=True), cohort)
    # The reveal for a dropped bank gives its agreement key, so every pairwise mask of its
    # late upload can be recomputed and removed; its self-mask seed is never revealed.
    survivors = ["bank-00", "bank-01", "bank-03"]
    shares = [key_share(_opened(cohort, relayed, "bank-02", h)) for h in survivors]
    key = recover_agreement_key(shares, public_bytes(cohort.secrets["bank-02"].agreement))
    pairs = pairwise_terms(key, "bank-02", cohort.publics(survivors), binding)
    assert pairs == cohort.terms("bank-02")
    undo = [MaskTerm(t.peer, t.seed, -t.sign) for t in pairs]
    stripped = decrypted_sum(
        secret, public, write_all([blob], tmp_path), masker_for(public, undo, binding)
    )
    assert np.max(np.abs(stripped - late)) > 1e6
    with pytest.raises(HEError, match="refusing to reveal both"):
        check_reveal(["bank-02"], ["bank-00", "bank-02"])


def test_shares_that_do_not_rebuild_the_rosters_key_are_refused(binding):
    cohort = Cohort.of(3, binding)
    shares = [key_share(p) for p in deal_shares(cohort.secrets["bank-00"], cohort.ids, 2).values()]
    other = public_bytes(cohort.secrets["bank-01"].agreement)
    with pytest.raises(HEError, match="do not rebuild"):
        recover_agreement_key(shares[:2], other)


def test_a_payload_of_the_wrong_size_is_refused():
    with pytest.raises(HEError, match="payload"):
        key_share(b"\0" * 10)

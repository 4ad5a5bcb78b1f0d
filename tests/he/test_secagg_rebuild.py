"""The one rebuild from reveals the portal and the nodes share: terms, blame and failures."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from he.errors import HEError
from he.masking import MaskTerm, RoundBinding, public_bytes
from he.recovery import (
    MASK_KEY,
    SELF_SEED,
    Advertised,
    RecoveryFailed,
    Revealed,
    deal_shares,
    dropout_terms,
    key_share,
    rebuild_correction,
    seed_commitment,
    seed_share,
    self_mask_terms,
)
from tests.he.secagg_support import Cohort

THRESHOLD = 3
BINDING = RoundBinding("consortium-test", 4, "ab" * 32)
DROPPED = ["bank-03"]
SURVIVORS = ["bank-00", "bank-01", "bank-02", "bank-04"]


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return Cohort.of(5, BINDING, seed=11)


@pytest.fixture(scope="module")
def payloads(cohort: Cohort) -> dict[str, dict[str, bytes]]:
    """dealer -> holder -> what the holder received from the dealer at round start."""
    return {d: deal_shares(cohort.secrets[d], cohort.ids, THRESHOLD) for d in cohort.ids}


def _b64(share) -> str:
    return base64.b64encode(share.to_bytes()).decode()


def _reveals(payloads, revealers: list[str]) -> list[Revealed]:
    return [
        Revealed(
            holder,
            {d: _b64(key_share(payloads[d][holder])) for d in DROPPED},
            {s: _b64(seed_share(payloads[s][holder])) for s in SURVIVORS},
        )
        for holder in revealers
    ]


def _advertised(cohort: Cohort) -> dict[str, Advertised]:
    return {
        bank: Advertised(
            public_bytes(secret.agreement), seed_commitment(secret.self_seed, BINDING, bank)
        )
        for bank, secret in cohort.secrets.items()
    }


def _rebuild(cohort: Cohort, reveals: list[Revealed], max_subsets: int = 32):
    return rebuild_correction(
        advertised=_advertised(cohort),
        survivors=SURVIVORS,
        dropped=DROPPED,
        reveals=reveals,
        threshold=THRESHOLD,
        binding=BINDING,
        max_subsets=max_subsets,
    )


def _key(terms: list[MaskTerm]) -> list[tuple[str, bytes, int]]:
    return sorted((t.peer, t.seed, t.sign) for t in terms)


def _expected(cohort: Cohort) -> list[MaskTerm]:
    """The correction computed from the secrets themselves, not from any share."""
    survivors = cohort.publics(SURVIVORS)
    terms = [
        term
        for bank in DROPPED
        for term in dropout_terms(bank, cohort.secrets[bank].agreement, survivors, BINDING)
    ]
    return terms + self_mask_terms({s: cohort.secrets[s].self_seed for s in SURVIVORS})


def _wrong(share_text: str | None) -> str:
    raw = bytearray(base64.b64decode(share_text or ""))
    raw[-1] ^= 0x55  # still a well-formed share, of another secret
    return base64.b64encode(bytes(raw)).decode()


def _with_key(reveal: Revealed, bank: str, text: str) -> Revealed:
    return replace(reveal, key_shares={**reveal.key_shares, bank: text})


def _with_seed(reveal: Revealed, bank: str, text: str) -> Revealed:
    return replace(reveal, seed_shares={**reveal.seed_shares, bank: text})


def test_a_threshold_of_reveals_rebuilds_the_correction_the_secrets_give(cohort, payloads):
    correction = _rebuild(cohort, _reveals(payloads, SURVIVORS[:THRESHOLD]))
    assert _key(correction.terms) == _key(_expected(cohort))
    assert len(correction.terms) == len(SURVIVORS) * (1 + len(DROPPED)) and correction.blame == {}


def test_a_wrong_share_is_blamed_and_the_other_reveals_still_rebuild(cohort, payloads):
    reveals = _reveals(payloads, SURVIVORS)
    reveals[0] = _with_seed(reveals[0], "bank-01", _wrong(reveals[0].seed_shares["bank-01"]))
    correction = _rebuild(cohort, reveals)
    assert _key(correction.terms) == _key(_expected(cohort))
    assert correction.blame == {"bank-00": ["a wrong share of bank-01's self-mask seed"]}


def test_too_few_readable_shares_fail_naming_the_unreadable_one(cohort, payloads):
    reveals = _reveals(payloads, SURVIVORS[:THRESHOLD])
    reveals[1] = _with_key(reveals[1], "bank-03", "not base64!")
    with pytest.raises(RecoveryFailed) as failed:
        _rebuild(cohort, reveals)
    assert (failed.value.owner, failed.value.secret) == ("bank-03", MASK_KEY)
    assert str(failed.value) == (
        "bank-03's round mask key cannot be rebuilt: 2 usable shares of the 3 needed "
        "(unusable from bank-01)"
    )


def test_when_no_subset_rebuilds_a_secret_it_fails_naming_the_revealers(cohort, payloads):
    reveals = _reveals(payloads, SURVIVORS[:THRESHOLD])
    reveals[2] = _with_seed(reveals[2], "bank-04", _wrong(reveals[2].seed_shares["bank-04"]))
    with pytest.raises(RecoveryFailed, match="no 3 of the shares revealed by bank-00, bank-01, "):
        _rebuild(cohort, reveals)
    with pytest.raises(RecoveryFailed) as failed:
        _rebuild(cohort, reveals)
    assert (failed.value.owner, failed.value.secret) == ("bank-04", SELF_SEED)


def test_the_subsets_tried_are_bounded(cohort, payloads):
    reveals = _reveals(payloads, SURVIVORS)
    # Three of the four subsets of 3 (in name order) hold bank-00's wrong share: within
    # three tries the one that leaves it out is never reached.
    reveals[0] = _with_key(reveals[0], "bank-03", _wrong(reveals[0].key_shares["bank-03"]))
    with pytest.raises(RecoveryFailed, match="round mask key"):
        _rebuild(cohort, reveals, max_subsets=3)
    assert _key(_rebuild(cohort, reveals, max_subsets=4).terms) == _key(_expected(cohort))


def test_a_bank_without_a_usable_advertised_key_is_an_error_not_a_crash(cohort, payloads):
    reveals = _reveals(payloads, SURVIVORS[:THRESHOLD])
    advertised = _advertised(cohort)
    for broken, message in [
        ({k: v for k, v in advertised.items() if k != "bank-02"}, "bank-02 advertised no"),
        ({**advertised, "bank-02": Advertised(b"short", "00")}, "not an X25519 public key"),
    ]:
        with pytest.raises(HEError, match=message):
            rebuild_correction(
                advertised=broken,
                survivors=SURVIVORS,
                dropped=DROPPED,
                reveals=reveals,
                threshold=THRESHOLD,
                binding=BINDING,
                max_subsets=32,
            )

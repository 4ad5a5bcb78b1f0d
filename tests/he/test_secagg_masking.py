"""Pairwise and self masks in the plaintext ring: exact cancellation, and hiding (real SEAL)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from he.codec import pack_update, unpack_aggregate
from he.errors import HEError
from he.keys import load_public_context
from he.masking import MaskTerm, RoundBinding, mask_words, pairwise_seed
from he.params import CkksParams
from he.ring import SealKit, kit_from_tenseal, load_ciphertext, plaintext_words
from he.seeded import (
    decode_chunk,
    decrypt_plaintext,
    encode_chunk,
    masker_for,
    max_chunk_bytes2,
)
from he.wire import HashingReader
from he.wire2 import iter_chunks2, read_header2
from tests.he.secagg_support import (
    Cohort,
    coefficients_from_slots,
    decrypted_sum,
    upload,
    write_all,
)

pytestmark = pytest.mark.filterwarnings("ignore")
PARAMS = CkksParams()
# Significance of the uniformity tests. The masks come from fixed seeds, so each test's
# p-value is fixed too (CKKS noise moves a coefficient by a few units of 2^60): the test is
# deterministic, and a broken mask (missing on some words, biased sampling) fails it.
ALPHA = 1e-3


@pytest.fixture(scope="module")
def kits(ckks) -> tuple[SealKit, SealKit]:
    public = load_public_context(ckks.public_bytes, PARAMS)
    return kit_from_tenseal(ckks.secret, PARAMS), kit_from_tenseal(public, PARAMS)


@pytest.fixture(scope="module")
def binding(ckks) -> RoundBinding:
    return RoundBinding("consortium-test", 7, ckks.fingerprint)


def _updates(banks: int, length: int) -> tuple[list[np.ndarray], list[int]]:
    rng = np.random.default_rng(banks)
    weights = [rng.normal(0, 0.1, length - 1) for _ in range(banks)]
    counts = [int(c) for c in rng.integers(20, 5000, banks)]
    return weights, counts


@pytest.mark.parametrize("banks", [3, 20])
@pytest.mark.parametrize("self_mask", [False, True])
def test_masks_cancel_exactly_so_the_sum_decrypts_to_the_plain_sum(
    kits, binding, tmp_path: Path, banks: int, self_mask: bool
):
    secret, public = kits
    cohort = Cohort.of(banks, binding)
    weights, counts = _updates(banks, 6000)
    packed = [pack_update(w, n, 1.5) for w, n in zip(weights, counts, strict=True)]
    blobs = [
        upload(secret, p, cohort.terms(b, self_mask=self_mask), cohort)
        for b, p in zip(cohort.ids, packed, strict=True)
    ]
    revealed = [MaskTerm(b, cohort.secrets[b].self_seed, -1) for b in cohort.ids]
    correction = masker_for(public, revealed, binding) if self_mask else None
    total = decrypted_sum(secret, public, write_all(blobs, tmp_path), correction)
    plain = np.sum(packed, axis=0)
    assert np.linalg.norm(total - plain) / np.linalg.norm(plain) < 1e-6
    avg, count = unpack_aggregate(total)
    expected = sum(w * n for w, n in zip(weights, counts, strict=True)) / sum(counts)
    assert count == sum(counts)
    assert np.max(np.abs(avg - expected)) < 1e-6


def test_without_the_self_mask_correction_the_sum_is_noise(kits, binding, tmp_path: Path):
    secret, public = kits
    cohort = Cohort.of(3, binding)
    packed = [pack_update(w, n, 1.5) for w, n in zip(*_updates(3, 3000), strict=True)]
    blobs = [
        upload(secret, p, cohort.terms(b, self_mask=True), cohort)
        for b, p in zip(cohort.ids, packed, strict=True)
    ]
    total = decrypted_sum(secret, public, write_all(blobs, tmp_path))
    assert np.max(np.abs(total - np.sum(packed, axis=0))) > 1e6


def _masked_coefficients(secret: SealKit, blob: bytes, chunk: int) -> np.ndarray:
    reader = HashingReader(io.BytesIO(blob))
    header = read_header2(reader)
    raw = list(iter_chunks2(reader, header, max_chunk_bytes2(PARAMS, seeded=True)))[chunk]
    plain = decrypt_plaintext(secret, load_ciphertext(secret, raw))
    slots = np.asarray(secret.encoder.decode_complex(plain))
    return coefficients_from_slots(slots, secret) / secret.moduli[0] + 0.5


def test_the_slot_to_coefficient_inversion_matches_seals_encoding(kits):
    secret, _ = kits
    values = np.random.default_rng(3).normal(0, 10, PARAMS.poly_modulus_degree)
    plain = encode_chunk(secret, values)
    coefficients = coefficients_from_slots(np.asarray(secret.encoder.decode_complex(plain)), secret)
    assert np.max(np.abs(coefficients - np.rint(coefficients))) < 1e-3
    assert np.allclose(decode_chunk(secret, plain, values.size), values, atol=1e-6)


@pytest.mark.parametrize("chunk", [0, 1])
def test_a_single_masked_submission_decrypts_to_coefficients_uniform_mod_q(
    kits, binding, chunk: int
):
    secret, _ = kits
    cohort = Cohort.of(3, binding)
    values = pack_update(np.random.default_rng(4).normal(0, 0.1, 6000), 900, 1.5)
    blob = upload(secret, values, cohort.terms("bank-01"), cohort)
    u = _masked_coefficients(secret, blob, chunk)
    assert stats.kstest(u, "uniform").pvalue > ALPHA
    observed, _ = np.histogram(u, bins=64, range=(0, 1))
    assert stats.chisquare(observed).pvalue > ALPHA


def test_the_same_statistic_tells_an_unmasked_submission_from_uniform(kits, binding):
    secret, _ = kits
    values = pack_update(np.random.default_rng(4).normal(0, 0.1, 6000), 900, 1.5)
    blob = upload(secret, values, [], Cohort.of(3, binding))
    u = _masked_coefficients(secret, blob, 0)
    assert stats.kstest(u, "uniform").pvalue < 1e-12


def test_two_different_updates_give_the_same_distribution_once_masked(kits, ckks):
    secret, _ = kits
    quiet = np.zeros(PARAMS.poly_modulus_degree)
    loud = np.random.default_rng(5).uniform(-1e6, 1e6, PARAMS.poly_modulus_degree)
    samples = []
    for round_number, values in [(11, quiet), (12, loud)]:
        cohort = Cohort.of(3, RoundBinding("consortium-test", round_number, ckks.fingerprint))
        samples.append(
            _masked_coefficients(secret, upload(secret, values, cohort.terms("bank-00"), cohort), 0)
        )
    assert stats.ks_2samp(samples[0], samples[1]).pvalue > ALPHA


def test_mask_words_are_below_the_prime_and_differ_per_chunk(kits, binding):
    secret, _ = kits
    seed = bytes(range(32))
    first = mask_words(seed, binding, 0, secret.moduli, PARAMS.poly_modulus_degree)
    second = mask_words(seed, binding, 1, secret.moduli, PARAMS.poly_modulus_degree)
    assert first.size == PARAMS.poly_modulus_degree
    assert int(first.max()) < secret.moduli[0] and int(second.max()) < secret.moduli[0]
    assert not np.array_equal(first, second)
    assert np.array_equal(first, mask_words(seed, binding, 0, secret.moduli, 4096))


def test_two_banks_derive_the_same_pairwise_seed_bound_to_the_round(binding):
    cohort = Cohort.of(2, binding)
    a, b = (cohort.secrets[x].agreement for x in cohort.ids)
    ab = pairwise_seed(a, "bank-00", b.public_key(), "bank-01", binding)
    assert ab == pairwise_seed(b, "bank-01", a.public_key(), "bank-00", binding)
    later = RoundBinding(binding.consortium, binding.round + 1, binding.epoch)
    assert ab != pairwise_seed(a, "bank-00", b.public_key(), "bank-01", later)
    signs = [t.sign for t in cohort.terms("bank-00") + cohort.terms("bank-01")]
    assert signs == [1, -1]


def test_a_bank_refuses_a_pairwise_mask_with_itself_or_a_malformed_seed(binding):
    cohort = Cohort.of(1, binding)
    key = cohort.secrets["bank-00"].agreement
    with pytest.raises(HEError, match="itself"):
        pairwise_seed(key, "bank-00", key.public_key(), "bank-00", binding)
    with pytest.raises(HEError, match="32 bytes"):
        MaskTerm("bank-01", b"short", 1)
    with pytest.raises(HEError, match="newline"):
        RoundBinding("evil\nconsortium", 1, "f" * 64).info(b"x")


@pytest.mark.parametrize("length", [PARAMS.poly_modulus_degree, 10])
def test_plaintext_words_read_in_bulk_equal_those_read_one_by_one(kits, length: int):
    secret, _ = kits
    plain = encode_chunk(secret, np.random.default_rng(length).normal(size=length))
    one_by_one = [plain.data(i) for i in range(plain.coeff_count())]
    assert plaintext_words(secret, plain).tolist() == one_by_one


# The small-count floor of the exactness claim: FedAvg error <= 1e-6 once the cohort's rows
# add up to at least 20. The error of the average is the CKKS error of the sum (about 1e-7
# per value at scale 2^28 for a few dozen banks) divided by sum(n); with sum(n) = 20 and
# weights of up to 10 in magnitude it stays well below 1e-6.
SMALL_COUNT_FLOOR = 20


@pytest.mark.parametrize("counts", [(5, 5, 5, 5), (1, 1, 18), (7, 6, 7)])
def test_at_the_small_count_floor_masked_fedavg_is_within_1e_6_of_plain_fedavg(
    kits, binding, tmp_path: Path, counts: tuple[int, ...]
):
    assert sum(counts) == SMALL_COUNT_FLOOR
    secret, public = kits
    cohort = Cohort.of(len(counts), binding, seed=5)
    rng = np.random.default_rng(len(counts))
    weights = [rng.uniform(-10, 10, 3000) for _ in counts]
    packed = [pack_update(w, n, 1.5) for w, n in zip(weights, counts, strict=True)]
    blobs = [
        upload(secret, p, cohort.terms(b, self_mask=True), cohort)
        for b, p in zip(cohort.ids, packed, strict=True)
    ]
    revealed = [MaskTerm(b, cohort.secrets[b].self_seed, -1) for b in cohort.ids]
    total = decrypted_sum(
        secret, public, write_all(blobs, tmp_path), masker_for(public, revealed, binding)
    )
    avg, count = unpack_aggregate(total)
    expected = sum(w * n for w, n in zip(weights, counts, strict=True)) / sum(counts)
    assert count == SMALL_COUNT_FLOOR
    assert np.max(np.abs(avg - expected)) < 1e-6

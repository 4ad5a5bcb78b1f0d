"""The integrity slot: tags, and forged aggregates refused after real CKKS decryption."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tenseal as ts

from he.aggregate import sum_vectors
from he.codec import decrypt_vector, encrypt_to_file, encrypt_vector, pack_update
from he.errors import HEError
from he.integrity import (
    AggregateRejected,
    check_aggregate,
    count_rows,
    integrity_key_check,
    integrity_key_new,
    tag_tolerance,
    tag_value,
)
from he.keys import fingerprint, generate_secret_context, load_public_context, public_context_bytes
from he.params import CkksParams

pytestmark = pytest.mark.filterwarnings("ignore")
PARAMS = CkksParams()
WEIGHTS = 300  # small vectors keep 20-bank sums quick; the tag slot is what is tested
BANKS = ("bank-a", "bank-b", "bank-c")


class Consortium:
    """One key epoch as the members hold it, and the public context the portal holds."""

    def __init__(self) -> None:
        self.secret = generate_secret_context(PARAMS)
        public = public_context_bytes(self.secret)
        self.public = load_public_context(public, PARAMS)
        self.fp = fingerprint(public)
        self.key = integrity_key_new()

    def update(self, tmp: Path, bank: str, number: int, seed: int) -> tuple[Path, np.ndarray]:
        """A bank's honest encrypted update for round ``number``, and its plaintext."""
        weights = np.random.default_rng(seed).normal(0, 0.3, WEIGHTS)
        # v1's public-key encryption is noisier than v2's symmetric one: with a few dozen
        # rows in total its FedAvg error reaches about 1e-6 (seen: 1.1e-6 at 33 rows), so
        # these sums carry a few hundred rows (v2's floor of 20 rows: test_secagg_masking).
        values = pack_update(weights, 100 + seed, tag_value(self.key, self.fp, number, bank))
        path = tmp / f"{bank}-{number}-{seed}.ckks"
        encrypt_to_file(self.secret, values, PARAMS, self.fp, path)
        return path, values

    def summed(self, paths: list[Path]) -> np.ndarray:
        """What the portal publishes for ``paths`` (public context only), decrypted."""
        out = io.BytesIO()
        sum_vectors(paths, self.public, PARAMS, out)
        return decrypt_vector(self.secret, io.BytesIO(out.getvalue()), PARAMS)

    def check(self, values: np.ndarray, banks: tuple[str, ...], number: int) -> np.ndarray:
        weights, _ = check_aggregate(values, banks, self.key, self.fp, number)
        return weights


@pytest.fixture(scope="module")
def consortium() -> Consortium:
    return Consortium()


@pytest.fixture(scope="module")
def round_7(consortium: Consortium, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("round7")
    return [consortium.update(tmp, bank, 7, seed)[0] for seed, bank in enumerate(BANKS)]


def test_a_tag_is_a_real_in_1_2_fixed_by_key_epoch_round_and_bank() -> None:
    key = integrity_key_new()
    tag = tag_value(key, "ab" * 32, 3, "bank-a")
    assert 1.0 <= tag < 2.0
    assert tag == tag_value(key, "ab" * 32, 3, "bank-a")
    others = {
        tag_value(integrity_key_new(), "ab" * 32, 3, "bank-a"),
        tag_value(key, "cd" * 32, 3, "bank-a"),
        tag_value(key, "ab" * 32, 4, "bank-a"),
        tag_value(key, "ab" * 32, 3, "bank-b"),
    }
    assert tag not in others and len(others) == 4


def test_a_tag_is_hmac_sha256_of_the_documented_message() -> None:
    import hashlib
    import hmac

    key = bytes(range(32))
    mac = hmac.new(key, b"consortium-integrity-v1|ff|2|bank-a", hashlib.sha256).digest()
    assert tag_value(key, "ff", 2, "bank-a") == 1 + int.from_bytes(mac[:5], "big") / 2**40


def test_an_integrity_key_of_the_wrong_size_is_refused_with_a_clear_message() -> None:
    with pytest.raises(HEError, match=r"integrity\.key"):
        integrity_key_check(b"short")


@pytest.mark.parametrize("n_banks", [3, 20])
def test_an_honest_sum_is_accepted_and_its_fedavg_is_exact(
    consortium: Consortium, tmp_path: Path, n_banks: int
) -> None:
    banks = tuple(f"bank-{i:02d}" for i in range(n_banks))
    made = [consortium.update(tmp_path, bank, 11, seed) for seed, bank in enumerate(banks)]
    decrypted = consortium.summed([path for path, _ in made])
    plain = np.sum([values for _, values in made], axis=0)
    weights = consortium.check(decrypted, banks, 11)
    assert np.max(np.abs(weights - plain[:-2] / plain[-2])) < 1e-6


@pytest.mark.parametrize("n_banks", [1, 20])
def test_the_ckks_error_of_a_sum_is_far_inside_the_tag_tolerance(
    consortium: Consortium, n_banks: int
) -> None:
    # Every slot of a full ciphertext sees the same error distribution as the tag slot.
    tags = np.random.default_rng(n_banks).uniform(1, 2, (n_banks, PARAMS.slots))
    total = ts.ckks_vector(consortium.secret, tags[0])
    for row in tags[1:]:
        total.add_(ts.ckks_vector(consortium.secret, row))
    error = np.asarray(total.decrypt()) - tags.sum(axis=0)
    # Measured: standard deviation 2.5e-6 for one ciphertext, 1.1e-5 for 20.
    assert error.std() < 3e-6 * np.sqrt(n_banks)
    assert 8 * error.std() < tag_tolerance(n_banks)
    assert tag_tolerance(256) < 0.5  # still far below the gap a missing bank leaves (>= 1)


def test_a_vector_the_operator_encrypted_with_the_public_context_is_refused(
    consortium: Consortium, round_7: list[Path]
) -> None:
    # The operator's best guess at the tag slot: the mean of a sum of three tags.
    forged = pack_update(np.full(WEIGHTS, 0.25), 30, 4.5)
    buf = io.BytesIO()
    encrypt_vector(consortium.public, forged, PARAMS, consortium.fp, buf)
    decrypted = decrypt_vector(consortium.secret, io.BytesIO(buf.getvalue()), PARAMS)
    with pytest.raises(AggregateRejected, match="integrity slot"):
        consortium.check(decrypted, BANKS, 7)


def test_one_banks_ciphertext_passed_off_as_the_sum_is_refused(
    consortium: Consortium, round_7: list[Path]
) -> None:
    with pytest.raises(AggregateRejected, match="integrity slot"):
        consortium.check(consortium.summed(round_7[:1]), BANKS, 7)


def test_an_old_rounds_aggregate_replayed_is_refused(
    consortium: Consortium, round_7: list[Path]
) -> None:
    decrypted = consortium.summed(round_7)
    consortium.check(decrypted, BANKS, 7)  # genuine for round 7
    with pytest.raises(AggregateRejected, match="integrity slot"):
        consortium.check(decrypted, BANKS, 8)


def test_a_sum_that_counts_one_bank_twice_is_refused(
    consortium: Consortium, round_7: list[Path]
) -> None:
    doubled = consortium.summed([round_7[0], *round_7])
    with pytest.raises(AggregateRejected, match="integrity slot"):
        consortium.check(doubled, BANKS, 7)
    with pytest.raises(AggregateRejected, match="more than once"):
        consortium.check(doubled, (BANKS[0], *BANKS), 7)


def test_a_ciphertext_under_a_foreign_key_is_refused(consortium: Consortium) -> None:
    # Decrypted under our key, a foreign key's ciphertext has coefficients uniform modulo
    # q (that is what RLWE security means), so this is also the random-coefficient case.
    for seed in range(10):
        foreign = generate_secret_context(PARAMS)
        values = pack_update(np.full(WEIGHTS, 0.1), 30, 4.5)
        buf = io.BytesIO()
        encrypt_vector(foreign, values, PARAMS, consortium.fp, buf)
        decrypted = decrypt_vector(consortium.secret, io.BytesIO(buf.getvalue()), PARAMS)
        with pytest.raises(AggregateRejected):
            consortium.check(decrypted, BANKS, seed)


@pytest.mark.parametrize(
    ("trailer", "message"),
    [
        ([30.0, np.nan], "not finite"),
        ([np.inf, 4.5], "not finite"),
        ([30.4, 4.5], "count slot"),
        ([0.0, 4.5], "count slot"),
        ([-3.0, 4.5], "count slot"),
    ],
)
def test_a_malformed_plaintext_is_refused_naming_the_check(
    consortium: Consortium, trailer: list[float], message: str
) -> None:
    values = np.concatenate([np.zeros(5), trailer])
    with pytest.raises(AggregateRejected, match=message):
        consortium.check(values, BANKS, 1)


def test_uniformly_random_coefficients_decode_to_a_refused_plaintext(
    consortium: Consortium,
) -> None:
    # Decoding a polynomial of coefficients uniform modulo the 60-bit prime: what the
    # node would see for a random-coefficient ciphertext.
    rng = np.random.default_rng(5)
    n = PARAMS.poly_modulus_degree
    roots = np.exp(1j * np.pi * (2 * np.arange(WEIGHTS + 2) + 1) / n)
    powers = roots[:, None] ** np.arange(n)[None, :]
    for _ in range(20):
        coeffs = rng.uniform(-(2.0**59), 2.0**59, n) / 2**PARAMS.global_scale_bits
        with pytest.raises(AggregateRejected):
            consortium.check((powers @ coeffs).real, BANKS, 1)


@pytest.mark.parametrize(
    ("count", "unit", "rows"),
    [(30.0, 1, 30.0), (30.0 / 1024, 1024, 30.0), (97656.25, 1024, 1e8), (3.5, 128, 448.0)],
)
def test_a_count_slot_in_units_of_rows_gives_the_total_in_rows(count, unit, rows) -> None:
    assert count_rows(count, unit, 3) == rows


@pytest.mark.parametrize(
    ("count", "unit"),
    [(30.4, 1), (30.4 / 1024, 1024), (0.2 / 1024, 1024), (-3.0 / 128, 128), (0.0, 2**16)],
)
def test_a_count_slot_that_is_not_a_positive_whole_number_of_rows_is_refused(count, unit) -> None:
    with pytest.raises(AggregateRejected, match=f"in units of {unit} rows"):
        count_rows(count, unit, 3)


def test_with_units_too_large_to_tell_whole_rows_only_positivity_is_checked() -> None:
    # A slack of half a row or more would refuse honest sums: the tag slot decides then.
    assert count_rows(1.3, 2**16, 3) == float(round(1.3 * 2**16))

"""The strict overflow bound, NaN/inf refusal and counts in units, on real TenSEAL (v1, v2)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tenseal as ts

from he.aggregate import sum_vectors
from he.codec import (
    STATS_COUNT_UNIT,
    check_headroom,
    decrypt_vector,
    encrypt_to_file,
    headroom_limit,
    pack_update,
    unpack_aggregate,
)
from he.errors import HEError
from he.keys import load_public_context
from he.params import CkksParams
from he.ring import SealKit, kit_from_tenseal
from he.seeded import encode_chunk
from tests.he.secagg_support import masked_sum

pytestmark = pytest.mark.filterwarnings("ignore")
PARAMS = CkksParams()
BANKS = 256  # bank_node.counts.MAX_BANKS_PER_SUM
LIMIT = headroom_limit(PARAMS, BANKS)
# The bound this replaces: 2^31 / 256, from a data prime taken as 2^60 and one real per slot.
NOMINAL_LIMIT = 2.0**31 / BANKS


def worst_v2_layout(peak: float) -> np.ndarray:
    """N reals at +-``peak`` (two per complex slot) whose plaintext coefficient 1 is largest.

    Coefficient c is (2/N) sum_j Re(z_j w^(e_j c)), slot j at the root exponent
    e_j = 3^j mod 2N (``tests.he.secagg_support.coefficients_from_slots``): signs aligned
    with that root reach about 1.27 * peak, above the 1.0 a v1 layout can reach.
    """
    n = PARAMS.poly_modulus_degree
    exponents = np.array([pow(3, j, 2 * n) for j in range(n // 2)])
    phase = -2 * np.pi * exponents / (2 * n)
    reals = np.empty(n)
    reals[0::2] = peak * np.where(np.cos(phase) >= 0, 1.0, -1.0)
    reals[1::2] = -peak * np.where(np.sin(phase) >= 0, 1.0, -1.0)
    return reals


@pytest.fixture(scope="module")
def kits(ckks) -> tuple[SealKit, SealKit]:
    public = load_public_context(ckks.public_bytes, PARAMS)
    return kit_from_tenseal(ckks.secret, PARAMS), kit_from_tenseal(public, PARAMS)


def v1_sum(ckks, packed: list[np.ndarray], folder: Path) -> np.ndarray:
    """Encrypt each vector (v1), sum as the portal does and decrypt."""
    secret: ts.Context = ckks.secret
    fingerprint: str = ckks.fingerprint
    public = load_public_context(ckks.public_bytes, PARAMS)
    paths = []
    for index, values in enumerate(packed):
        paths.append(folder / f"{index:03d}.ckks")
        encrypt_to_file(secret, values, PARAMS, fingerprint, paths[-1])
    out = io.BytesIO()
    sum_vectors(paths, public, PARAMS, out)
    return decrypt_vector(secret, io.BytesIO(out.getvalue()), PARAMS)


def test_the_worst_v2_layout_puts_more_than_its_peak_on_one_coefficient(kits):
    secret, _ = kits
    plain = encode_chunk(secret, worst_v2_layout(1000.0))
    word, q = plain.data(1), secret.moduli[0]
    centred = word if word < q // 2 else word - q
    assert abs(centred) / secret.scale > 1.2 * 1000.0


def test_256_masked_v2_uploads_at_the_limit_in_the_worst_layout_sum_without_wrapping(
    kits, ckks, tmp_path: Path
):
    values = worst_v2_layout(LIMIT)
    check_headroom(values, PARAMS, BANKS)  # at the limit, so accepted
    total = masked_sum(kits, ckks.fingerprint, [values] * BANKS, tmp_path)
    assert np.max(np.abs(total - BANKS * values)) < 1e-3 * BANKS


def test_at_the_old_nominal_bound_the_same_sum_wraps(kits, ckks, tmp_path: Path):
    values = worst_v2_layout(NOMINAL_LIMIT)
    with pytest.raises(HEError, match="overflow"):
        check_headroom(values, PARAMS, BANKS)
    total = masked_sum(kits, ckks.fingerprint, [values] * BANKS, tmp_path)
    assert np.max(np.abs(total - BANKS * values)) > 1e8


def test_256_v1_uploads_at_the_limit_sum_without_wrapping(ckks, tmp_path: Path):
    # One real per slot: every slot at +limit puts the whole of it on coefficient 0.
    values = np.full(PARAMS.slots, LIMIT)
    total = v1_sum(ckks, [values] * BANKS, tmp_path)
    assert np.max(np.abs(total - BANKS * values)) < 1e-3 * BANKS
    assert np.max(np.abs(total)) > 0.99 * BANKS * LIMIT


def test_the_bound_holds_below_half_the_data_prime_that_seal_picked(kits):
    secret, _ = kits
    worst_coefficient = BANKS * np.sqrt(2) * LIMIT * secret.scale
    assert worst_coefficient < secret.moduli[0] / 2


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinity_is_refused_before_encryption_naming_the_problem(bad: float):
    weights = np.array([0.1, bad, 0.3])
    with pytest.raises(HEError, match=r"1 value\(s\) that are NaN or infinite"):
        pack_update(weights, 100, 1.5)
    with pytest.raises(HEError, match="NaN or infinite"):
        check_headroom(np.array([1.0, bad]), PARAMS, BANKS)


@pytest.mark.parametrize("unit", [0, 3, -2, 1.5, True])
def test_a_count_unit_that_is_not_a_power_of_two_is_refused(unit):
    with pytest.raises(HEError, match="power of two"):
        pack_update(np.ones(3), 100, 1.5, unit)


@pytest.mark.parametrize("unit", [1, 2, 128, 1024, 2**15])
def test_packing_in_count_units_leaves_fedavg_and_the_row_total_unchanged(unit: int):
    rng = np.random.default_rng(unit)
    weights = [rng.normal(0, 0.3, 50) for _ in range(4)]
    counts = [100_000_000, 17, 3_000, 999_999]
    packed = [pack_update(w, n, 1.5, unit) for w, n in zip(weights, counts, strict=True)]
    avg, rows = unpack_aggregate(np.sum(packed, axis=0), unit)
    expected = sum(w * n for w, n in zip(weights, counts, strict=True)) / sum(counts)
    assert rows == sum(counts)
    assert np.max(np.abs(avg - expected)) < 1e-12
    assert packed[0][-2] == counts[0] / unit


# The statistics round's floor: its counts are in units of STATS_COUNT_UNIT rows, so the
# CKKS error of the sum (a few 1e-6 absolute) is divided by sum(n)/1024, not sum(n): the
# pooled moments are within about 3e-3 / sum(n) (1.6e-4 measured at sum(n) = 20), and
# within 1e-6 from about 4,000 rows (docs/secure-aggregation.md, "Headroom and counts").
@pytest.mark.parametrize(("rows", "bound"), [((5, 5, 5, 5), 1e-3), ((1500, 1000, 2000), 1e-6)])
def test_the_statistics_rounds_pooled_moments_meet_their_stated_floor(
    kits, ckks, tmp_path: Path, rows: tuple[int, ...], bound: float
):
    rng = np.random.default_rng(sum(rows))
    moments = [rng.uniform(-3, 3, 80) for _ in rows]
    packed = [pack_update(m, n, 1.5, STATS_COUNT_UNIT) for m, n in zip(moments, rows, strict=True)]
    pooled, total = unpack_aggregate(
        masked_sum(kits, ckks.fingerprint, packed, tmp_path), STATS_COUNT_UNIT
    )
    expected = sum(m * n for m, n in zip(moments, rows, strict=True)) / sum(rows)
    assert total == sum(rows)
    assert np.max(np.abs(pooled - expected)) < bound

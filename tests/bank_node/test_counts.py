"""Counts in consortium-wide units: a bank with 100 million rows fits, FedAvg stays exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bank_node.counts import (
    MAX_BANKS_PER_SUM,
    TRAINING_COUNT_UNITS,
    pack_checked,
    round_count_unit,
    training_count_unit,
)
from bank_node.training import Normalizer
from he.codec import STATS_COUNT_UNIT, pack_update
from he.errors import HEError
from he.integrity import check_aggregate, integrity_key_new, tag_value
from he.keys import load_public_context
from he.params import CkksParams
from he.ring import SealKit, kit_from_tenseal
from protocol import RoundInfo
from tests.bank_node.roster_fakes import policy, training_round
from tests.he.secagg_support import masked_sum

pytestmark = pytest.mark.filterwarnings("ignore")
PARAMS = CkksParams()
BIG_BANK = 100_000_000
LENGTH = PARAMS.poly_modulus_degree  # one v2 chunk: weights and the two trailer slots
KEY = integrity_key_new()


@pytest.fixture(scope="module")
def kits(ckks) -> tuple[SealKit, SealKit]:
    public = load_public_context(ckks.public_bytes, PARAMS)
    return kit_from_tenseal(ckks.secret, PARAMS), kit_from_tenseal(public, PARAMS)


def _round(kind: str = "training", stats_round: int | None = 1, number: int = 4) -> RoundInfo:
    return training_round(policy(), kind=kind, stats_round=stats_round, number=number)


def _banks(count: int) -> list[str]:
    return [f"bank-{i:03d}" for i in range(count)]


@pytest.mark.parametrize(
    "rows, unit",
    [
        (None, 1),
        (20, 1),
        (TRAINING_COUNT_UNITS, 1),
        (TRAINING_COUNT_UNITS + 1, 2),
        (2 * TRAINING_COUNT_UNITS, 2),
        (2 * TRAINING_COUNT_UNITS + 1, 4),
        (BIG_BANK, 128),
        (256 * BIG_BANK, 32768),
    ],
)
def test_the_training_count_unit_is_the_smallest_power_of_two_within_2_20_units(rows, unit):
    assert training_count_unit(rows) == unit
    if rows is not None:
        assert rows / unit <= TRAINING_COUNT_UNITS < 2 * rows / unit or unit == 1


def test_a_statistics_round_counts_in_the_protocol_unit_and_a_round_without_one_in_rows():
    assert round_count_unit(_round("statistics", None, 1), None) == STATS_COUNT_UNIT
    assert round_count_unit(_round(stats_round=None), None) == 1
    assert round_count_unit(_round(stats_round=1), float(BIG_BANK)) == 128


def test_an_evaluation_round_counts_validation_rows_in_the_protocol_unit_whatever_its_total():
    # Its histograms count rows like a statistics round, however many the consortium has.
    assert round_count_unit(_round("evaluation", None, 1), float(BIG_BANK)) == STATS_COUNT_UNIT


def test_a_bank_too_large_for_counts_in_rows_is_told_to_enable_normalize_features():
    weights = np.random.default_rng(0).normal(0, 0.3, 100)
    with pytest.raises(HEError, match="enable normalize_features") as caught:
        pack_checked(_round(stats_round=None), weights, BIG_BANK, 1.5, 1, PARAMS)
    assert "round 4" in str(caught.value) and "overflow" in str(caught.value)
    packed = pack_checked(_round(), weights, BIG_BANK, 1.5, 128, PARAMS)
    assert packed[-2] == BIG_BANK / 128


@pytest.mark.parametrize(
    "kind, values, message",
    [
        ("training", np.full(10, 1e3), "weights are too large"),
        ("statistics", np.full(10, 1e4), "rescale that feature"),
    ],
)
def test_a_packed_update_that_would_overflow_is_refused_saying_what_to_change(
    kind, values, message
):
    rnd = _round(kind, 1 if kind == "training" else None)
    unit = round_count_unit(rnd, float(BIG_BANK))
    with pytest.raises(HEError, match=message):
        pack_checked(rnd, values, BIG_BANK, 1.5, unit, PARAMS)


def test_nan_in_a_trained_update_is_refused_at_the_node_with_a_clear_error():
    with pytest.raises(HEError, match="NaN or infinite; nothing was encrypted"):
        pack_checked(_round(), np.array([0.1, np.nan]), 100, 1.5, 1, PARAMS)


def test_a_small_consortium_packs_in_rows_exactly_as_before():
    weights = np.random.default_rng(1).normal(0, 0.3, 50)
    unit = round_count_unit(_round(), 20.0)  # the small-count floor: sum n = 20
    assert unit == 1
    packed = pack_checked(_round(), weights, 7, 1.5, unit, PARAMS)
    assert np.array_equal(packed, pack_update(weights, 7, 1.5))


def test_a_100_million_row_bank_among_256_masked_uploads_gives_the_exact_fedavg(
    kits, ckks, tmp_path: Path
):
    rng = np.random.default_rng(12)
    banks = _banks(MAX_BANKS_PER_SUM)
    counts = [BIG_BANK, *(int(c) for c in rng.integers(20, 2_000_000, len(banks) - 1))]
    weights = [rng.normal(0, 0.3, LENGTH - 2) for _ in banks]
    rnd = _round(number=9)
    unit = round_count_unit(rnd, float(sum(counts)))
    assert unit > 1
    with pytest.raises(HEError, match="overflow"):  # in rows it would not fit
        pack_checked(rnd, weights[0], BIG_BANK, 1.5, 1, PARAMS)
    packed = [
        pack_checked(rnd, w, n, tag_value(KEY, ckks.fingerprint, 9, b), unit, PARAMS)
        for b, w, n in zip(banks, weights, counts, strict=True)
    ]
    summed = masked_sum(kits, ckks.fingerprint, packed, tmp_path)
    avg, rows = check_aggregate(summed, banks, KEY, ckks.fingerprint, 9, unit)
    expected = sum(w * n for w, n in zip(weights, counts, strict=True)) / sum(counts)
    assert rows == sum(counts)
    assert np.max(np.abs(avg - expected)) < 1e-6


def test_a_statistics_round_with_a_100_million_row_bank_gives_the_pooled_mean_and_std(
    kits, ckks, tmp_path: Path
):
    rng = np.random.default_rng(13)
    features = 40
    banks = _banks(8)
    counts = [BIG_BANK, *(int(c) for c in rng.integers(20, 500_000, len(banks) - 1))]
    means = [rng.uniform(-1, 1, features) for _ in banks]
    seconds = [m**2 + rng.uniform(0.05, 4, features) for m in means]
    rnd = _round("statistics", None, number=1)
    unit = round_count_unit(rnd, None)
    packed = [
        pack_checked(
            rnd, np.concatenate([m, s]), n, tag_value(KEY, ckks.fingerprint, 1, b), unit, PARAMS
        )
        for b, m, s, n in zip(banks, means, seconds, counts, strict=True)
    ]
    summed = masked_sum(kits, ckks.fingerprint, packed, tmp_path)
    moments, rows = check_aggregate(summed, banks, KEY, ckks.fingerprint, 1, unit)
    norm = Normalizer.from_moments(moments, 1, rows=int(rows))
    total = sum(counts)
    mean = sum(m * n for m, n in zip(means, counts, strict=True)) / total
    second = sum(s * n for s, n in zip(seconds, counts, strict=True)) / total
    assert norm.rows == total
    assert np.max(np.abs(norm.mean - mean)) < 1e-6
    assert np.max(np.abs(norm.std - np.sqrt(second - mean**2))) < 1e-6
    assert training_count_unit(norm.rows) == 128  # what the following training rounds use

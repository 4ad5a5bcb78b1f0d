"""Bounded influence: the honest bank's cap and clip, and the bound a node checks."""

import numpy as np
import pytest

from models.influence import capped_rows, clip_update, norm_bound, update_norm


def test_a_step_longer_than_the_clip_norm_is_shortened_to_it_in_the_same_direction():
    base = np.zeros(4, dtype=np.float32)
    weights = np.array([3.0, 4.0, 0.0, 0.0], dtype=np.float32)
    clipped, norm = clip_update(weights, base, 1.0)
    assert norm == pytest.approx(5.0)
    assert update_norm(clipped, base) == pytest.approx(1.0, rel=1e-6)
    assert np.allclose(clipped, [0.6, 0.8, 0.0, 0.0]) and clipped.dtype == np.float32


def test_a_step_within_the_clip_norm_is_left_alone():
    base = np.ones(3)
    weights = base + 0.1
    clipped, _ = clip_update(weights, base, 1.0)
    assert clipped is weights


def test_an_average_of_clipped_steps_stays_within_the_bound():
    rng = np.random.default_rng(0)
    base = rng.normal(size=1000)
    steps = [clip_update(base + rng.normal(scale=s, size=1000), base, 0.5)[0] for s in (0.1, 1, 9)]
    average = np.average(steps, axis=0, weights=[5, 1, 3])
    assert update_norm(average, base) <= norm_bound(0.5, 1000)
    assert update_norm(base + 2 * (average - base), base) > norm_bound(0.5, 1000)


@pytest.mark.parametrize(
    ("rows", "total", "share", "expected"),
    [(100, 1000, 0.25, 100), (600, 1000, 0.25, 250), (5, 10, 0.01, 1)],
)
def test_a_bank_counts_at_most_its_share_of_the_consortium_rows(rows, total, share, expected):
    assert capped_rows(rows, total, share) == expected


@pytest.mark.parametrize(("rows", "total", "share"), [(0, 10, 0.5), (5, 0, 0.5), (5, 10, 0.0)])
def test_nonsense_counts_or_shares_are_refused(rows, total, share):
    with pytest.raises(ValueError):
        capped_rows(rows, total, share)

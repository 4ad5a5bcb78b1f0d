"""The node's bounds on its own update, and the aggregate's distance check, without a network."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bank_node import metrics as node_metrics
from bank_node.aggregate_guard import Expected, check_global_model
from bank_node.checks import Refused
from bank_node.influence import bound_update
from models.features import FEATURE_NAMES
from models.influence import norm_bound, update_norm
from models.nets import initial_vector
from protocol import RoundInfo
from tests.protocol.messages import policy_dict, round_dict

SPEC = {"kind": "mlp", "hidden": [4], "seed": 2, "loss": "bce"}
FEATURES = len(FEATURE_NAMES)
START = initial_vector(SPEC, FEATURES)


def _round(kind: str = "training", **policy: Any) -> RoundInfo:
    snapshot = policy_dict(model_spec=SPEC, n_features=FEATURES, **policy)
    return RoundInfo.from_dict(round_dict(kind=kind, policy=snapshot, base_round=None))


def test_a_step_longer_than_the_clip_norm_is_moved_back_onto_the_ball_around_the_start():
    clipped_before = node_metrics.UPDATES_CLIPPED._value.get()
    far = START + 3.0
    bounded = bound_update(_round(update_clip_norm=2.0), far, 100, None, None)
    assert update_norm(bounded.weights, START) == pytest.approx(2.0)
    assert bounded.clipped and bounded.norm == pytest.approx(update_norm(far, START))
    assert node_metrics.UPDATES_CLIPPED._value.get() == clipped_before + 1
    assert node_metrics.UPDATE_NORM._value.get() == pytest.approx(bounded.norm)


def test_a_step_within_the_clip_norm_is_sent_as_trained_around_the_rounds_base():
    base = START + 1.0
    near = base + 0.01
    bounded = bound_update(_round(update_clip_norm=2.0), near, 100, base, None)
    assert bounded.weights is near and not bounded.clipped


def test_without_bounds_or_in_a_statistics_round_nothing_changes():
    weights = START + 50.0
    for rnd in (_round(), _round("statistics", update_clip_norm=0.1, max_bank_share=0.1)):
        bounded = bound_update(rnd, weights, 900, None, 1000)
        assert bounded.weights is weights and bounded.rows == 900 and bounded.norm is None


@pytest.mark.parametrize(("rows", "total", "sent"), [(900, 1000, 500), (100, 1000, 100)])
def test_a_bank_reports_at_most_the_policys_share_of_the_consortiums_rows(rows, total, sent):
    bounded = bound_update(_round(max_bank_share=0.5), START, rows, None, total)
    assert bounded.rows == sent and bounded.trained_rows == rows
    assert bounded.capped == (sent < rows)


def test_a_cap_without_the_consortiums_total_leaves_the_count_and_says_so(caplog):
    bounded = bound_update(_round(max_bank_share=0.5), START, 900, None, None)
    assert bounded.rows == 900
    assert "no statistics round total" in caplog.text


def _expected(clip: float | None, ratio: float | None = None) -> Expected:
    return Expected(
        7, SPEC, FEATURES, n_banks=3, previous=START, max_update_ratio=ratio, clip_norm=clip
    )


def test_an_aggregate_within_the_norm_bound_is_accepted():
    direction = np.ones_like(START) / np.sqrt(START.size)
    check_global_model(_expected(2.0), START + 2.0 * direction, 600.0)


@pytest.mark.parametrize("step", [2.5, 1e300])
def test_an_aggregate_beyond_the_norm_bound_is_refused_naming_the_norm_and_the_bound(step):
    direction = np.ones_like(START) / np.sqrt(START.size)
    with pytest.raises(Refused) as caught:
        check_global_model(_expected(2.0), START + step * direction, 600.0)
    assert caught.value.reason == "update_too_large"
    bound = norm_bound(2.0, START.size)
    assert f"update_clip_norm 2 allows at most {bound:.4g}" in caught.value.message
    assert "moved" in caught.value.message and "round 7" in caught.value.message


def test_the_banks_own_ratio_guardrail_still_applies_under_a_clip_norm():
    direction = np.ones_like(START) / np.sqrt(START.size)
    moved = START + 1.0 * direction
    check_global_model(_expected(2.0), moved, 600.0)
    with pytest.raises(Refused, match="max_update_ratio"):
        check_global_model(_expected(2.0, ratio=1e-6), moved, 600.0)

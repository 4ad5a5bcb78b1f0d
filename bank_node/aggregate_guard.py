"""Checks on a decrypted training aggregate beyond its integrity: a model this bank may adopt.

``he.integrity.check_aggregate`` proves the plaintext is the sum of the manifest's banks'
updates; it cannot tell an honest sum from one a member poisoned within its own slot (a
count of 1e9, weights scaled by 100). These checks refuse what no honest round produces:
a weight that is not finite, more rows than the consortium counted in its statistics
round, a vector that is not the policy's model, a model further from the one it was
trained from than honest clipped updates can move it (the policy's ``update_clip_norm``,
docs/robustness.md), and one further than the bank's own guardrail ``max_update_ratio``
allows. Each raises ``Refused`` with its own reason; the agent keeps its last good model
and objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bank_node.checks import Refused
from he.codec import count_unit_check
from he.errors import HEError
from he.integrity import COUNT_TOLERANCE, tag_tolerance
from models.influence import norm_bound, update_norm
from models.nets import build_model, initial_vector
from models.vector import vector_length

# A previous model this close to zero has no meaningful relative distance: the ratio is
# taken against this floor instead (the policy's initial weights are far above it).
MIN_PREVIOUS_NORM = 1e-12


@dataclass(frozen=True)
class Expected:
    """What a round's decrypted model must be: its policy's model, and the bank's bounds.

    ``consortium_rows``: the statistics round's total (None: the round has none);
    ``previous``: the model it was trained from (None: no distance checks);
    ``max_update_ratio``: the bank's guardrail (None: no limit);
    ``clip_norm``: the policy's ``update_clip_norm`` (None: off).
    """

    number: int
    spec: dict[str, Any]
    n_features: int
    n_banks: int
    count_unit: int = 1
    consortium_rows: int | None = None
    previous: np.ndarray | None = None
    max_update_ratio: float | None = None
    clip_norm: float | None = None


def check_global_model(expected: Expected, weights: np.ndarray, rows: float) -> None:
    """Every check below, in order; ``Refused`` at the first that fails."""
    check_weights_finite(expected.number, weights)
    check_total_rows(expected, rows)
    check_model_length(expected, weights)
    if expected.previous is not None and expected.clip_norm is not None:
        check_clip_norm(expected.number, weights, expected.previous, expected.clip_norm)
    if expected.previous is not None and expected.max_update_ratio is not None:
        check_update_ratio(expected.number, weights, expected.previous, expected.max_update_ratio)


def check_weights_finite(number: int, weights: np.ndarray) -> None:
    """FedAvg of finite sums can still overflow (a huge sum over a tiny count)."""
    if not np.all(np.isfinite(weights)):
        bad = int(np.size(weights) - np.count_nonzero(np.isfinite(weights)))
        raise Refused(
            "aggregate_not_finite",
            f"round {number}: the averaged model holds {bad} weight(s) that are not finite",
        )


def check_total_rows(expected: Expected, rows: float) -> None:
    """The aggregate counts no more rows than the consortium's statistics round did.

    Both totals count the same training rows of the same members; a member that inflates
    its count to take over the average shows here. The slack is the count slot's noise.
    """
    total = expected.consortium_rows
    if total is None or total <= 0:
        return
    try:
        unit = count_unit_check(expected.count_unit)
    except HEError as exc:
        raise Refused("aggregate_count", f"round {expected.number}: {exc}") from None
    slack = COUNT_TOLERANCE if unit == 1 else tag_tolerance(max(expected.n_banks, 1)) * unit
    if rows > total + slack:
        raise Refused(
            "aggregate_count",
            f"round {expected.number}: the aggregate counts {rows:.0f} rows, more than the "
            f"{total} the consortium counted in its statistics round; a member inflated its "
            "count",
        )


def check_moments(number: int, moments: np.ndarray, n_features: int) -> None:
    """A statistics aggregate holds ``[E[x], E[x^2]]`` for each of the policy's features."""
    if np.ndim(moments) != 1 or np.size(moments) != 2 * n_features:
        raise Refused(
            "aggregate_shape",
            f"round {number}: the statistics aggregate holds {np.size(moments)} values, not "
            f"2 x {n_features} feature moments",
        )


def policy_model_length(number: int, spec: dict[str, Any], n_features: int) -> int:
    """Parameters of the policy's model; ``Refused`` when the spec builds no model."""
    try:
        return vector_length(build_model(spec, n_features))
    except (ValueError, TypeError, RuntimeError) as exc:
        raise Refused("model_invalid", f"round {number}: the policy's model spec: {exc}") from None


def initial_weights(number: int, spec: dict[str, Any], n_features: int) -> np.ndarray:
    """The policy's deterministic initial weights (a round without a base starts there)."""
    try:
        return initial_vector(spec, n_features)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise Refused("model_invalid", f"round {number}: the policy's model spec: {exc}") from None


def check_model_length(expected: Expected, weights: np.ndarray) -> None:
    """The vector has exactly the policy's model's parameters, in one dimension."""
    want = policy_model_length(expected.number, expected.spec, expected.n_features)
    if np.ndim(weights) != 1 or np.size(weights) != want:
        raise Refused(
            "model_invalid",
            f"round {expected.number}: the aggregate holds {np.size(weights)} weights, the "
            f"policy's model has {want}",
        )


def update_ratio(previous: np.ndarray, weights: np.ndarray) -> float:
    """``||weights - previous|| / ||previous||`` (L2), the size of one round's step."""
    if np.shape(previous) != np.shape(weights):
        return float("inf")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is inf: refused
        base = max(float(np.linalg.norm(previous)), MIN_PREVIOUS_NORM)
        return float(np.linalg.norm(np.asarray(weights) - np.asarray(previous))) / base


def check_update_ratio(
    number: int, weights: np.ndarray, previous: np.ndarray, limit: float
) -> None:
    """The new model moved no further from the previous one than the bank's guardrail."""
    ratio = update_ratio(previous, weights)
    if not ratio <= limit:  # also refuses a NaN ratio
        raise Refused(
            "update_too_large",
            f"round {number}: the new global model is {ratio:.3g} times the previous model's "
            f"norm away from it; this bank's guardrail max_update_ratio is {limit:g}",
        )


def check_clip_norm(number: int, weights: np.ndarray, previous: np.ndarray, clip: float) -> None:
    """The new model is no further from its base than an average of clipped updates can be.

    Every honest update lies within ``clip`` of the base, so their weighted average does
    too; ``norm_bound`` adds the CKKS noise. Anything further holds an unclipped update.
    """
    bound = norm_bound(clip, int(np.size(weights)))
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is inf: refused
        distance = update_norm(weights, previous)
    if not distance <= bound:  # also refuses a NaN distance
        raise Refused(
            "update_too_large",
            f"round {number}: the new global model moved {distance:.4g} (L2) from the model "
            f"it was trained from; the policy's update_clip_norm {clip:g} allows at most "
            f"{bound:.4g} for an average of clipped updates: at least one member's update was "
            "not clipped. This bank does not adopt it or train on it, and objects",
        )

"""Bounded influence at the node: clip this bank's step and cap its count before packing.

The policy's ``update_clip_norm`` and ``max_bank_share`` (docs/robustness.md, "Bounded
influence") are kept by each honest bank on its own update, since nobody can inspect an
encrypted one: the trained weights go back onto the clip ball around the round's base, and
the reported count is at most the share of the statistics round's consortium total. The
maths is ``models.influence``; this module applies it to a round, logs and counts it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from bank_node import metrics as node_metrics
from models.influence import capped_rows, clip_update
from models.nets import initial_vector
from protocol import RoundInfo

log = logging.getLogger("bank_node")


@dataclass(frozen=True)
class Bounded:
    """An update after the policy's bounds: what is packed, and what the bounds did.

    ``norm`` is the step's L2 norm before clipping (None: the policy sets no clip norm);
    ``rows`` the count to report, ``trained_rows`` the rows trained on.
    """

    weights: np.ndarray
    rows: int
    trained_rows: int
    norm: float | None = None
    clipped: bool = False

    @property
    def capped(self) -> bool:
        return self.rows < self.trained_rows


def clip_base(rnd: RoundInfo, base: np.ndarray | None) -> np.ndarray:
    """The centre of the clip ball: the round's base, or the policy's initial weights.

    The initial weights depend on the model spec's seed alone (``models.nets``), so every
    node clips against the same point, and checks the aggregate against it.
    """
    if base is not None:
        return base
    return initial_vector(rnd.policy.model_spec, rnd.policy.n_features)


def bound_update(
    rnd: RoundInfo,
    weights: np.ndarray,
    n: int,
    base: np.ndarray | None,
    consortium_rows: int | None,
) -> Bounded:
    """``weights`` and count ``n`` of training round ``rnd`` under its policy's bounds.

    ``base`` is the round's decrypted base (None: the initial weights); ``consortium_rows``
    the statistics round's decrypted total (None: the round has no statistics round).
    Statistics and evaluation rounds are not bounded: their counts are what they measure.
    """
    policy = rnd.policy
    if not rnd.is_training:
        return Bounded(weights, n, n)
    norm, clipped = None, False
    if policy.update_clip_norm is not None:
        weights, norm = clip_update(weights, clip_base(rnd, base), policy.update_clip_norm)
        clipped = norm > policy.update_clip_norm
    rows = _capped(rnd, n, consortium_rows)
    bounded = Bounded(weights, rows, n, norm, clipped)
    _record(rnd, bounded)
    return bounded


def _capped(rnd: RoundInfo, n: int, consortium_rows: int | None) -> int:
    share = rnd.policy.max_bank_share
    if share is None:
        return n
    if not consortium_rows:
        # The protocol refuses a cap without a statistics round (protocol.policy); a round
        # that still has none (its statistics round unpublished) cannot know N.
        log.warning(
            "round %s: max_bank_share %g but no statistics round total: count sent uncapped",
            rnd.number,
            share,
        )
        return n
    return capped_rows(n, consortium_rows, share)


def _record(rnd: RoundInfo, bounded: Bounded) -> None:
    """Log and count what the bounds did (the norm is this bank's own, on its own node)."""
    policy = rnd.policy
    if bounded.norm is not None:
        node_metrics.UPDATE_NORM.set(bounded.norm)
        if bounded.clipped:
            node_metrics.UPDATES_CLIPPED.inc()
            log.info(
                "round %s: update clipped from L2 %.4g to the policy's update_clip_norm %g",
                rnd.number,
                bounded.norm,
                policy.update_clip_norm,
            )
    if bounded.capped:
        node_metrics.COUNTS_CAPPED.inc()
        log.info(
            "round %s: count capped from %d to %d rows (max_bank_share %g)",
            rnd.number,
            bounded.trained_rows,
            bounded.rows,
            policy.max_bank_share,
        )

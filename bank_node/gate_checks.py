"""Checks on evaluation rounds (docs/robustness.md, "The evaluation gate"): pure, ``Refused``.

An evaluation round E compares a candidate (E's ``candidate_round``) with the model that
candidate was trained from (E's ``base_round``). The portal describes both; a node checks
that the description is self-consistent before it scores anything, so an operator cannot
make a harmful candidate look good by comparing it with the wrong "current" model, and
that a decrypted gate aggregate has the gate's shape before it is decided on.
"""

from __future__ import annotations

import numpy as np

from bank_node.checks import Refused
from he.codec import TRAILER_SLOTS
from models.gate import GATE_VECTOR_LENGTH
from protocol import RoundInfo


def _invalid(evaluation: RoundInfo, why: str) -> Refused:
    return Refused("evaluation_invalid", f"evaluation round {evaluation.number}: {why}")


def check_evaluation_round(evaluation: RoundInfo) -> int:
    """E is a gate under a gated policy and names its candidate; returns the candidate."""
    if not evaluation.is_evaluation:
        raise _invalid(evaluation, f"it is a {evaluation.kind} round")
    if evaluation.candidate_round is None:
        raise _invalid(evaluation, "it names no candidate round")
    if evaluation.policy.gate_tolerance is None:
        raise _invalid(evaluation, "its policy has no gate_tolerance")
    want = GATE_VECTOR_LENGTH + TRAILER_SLOTS
    if evaluation.vector_length != want:
        raise _invalid(
            evaluation, f"its vector length is {evaluation.vector_length}, the gate's is {want}"
        )
    return evaluation.candidate_round


def check_candidate(evaluation: RoundInfo, candidate: RoundInfo) -> None:
    """The candidate is a published training round with E's base and statistics round."""
    if candidate.number != evaluation.candidate_round or not candidate.is_training:
        raise _invalid(evaluation, f"round {candidate.number} is not a training candidate")
    if candidate.policy.digest() != evaluation.policy.digest():
        raise _invalid(evaluation, f"its candidate round {candidate.number} ran another policy")
    if candidate.state != "published":
        raise _invalid(evaluation, f"its candidate round {candidate.number} is {candidate.state}")
    if candidate.base_round != evaluation.base_round:
        raise _invalid(
            evaluation,
            f"it compares candidate {candidate.number} with round {evaluation.base_round}, but "
            f"the candidate was trained from {candidate.base_round}",
        )
    if candidate.stats_round != evaluation.stats_round:
        raise _invalid(
            evaluation,
            f"its statistics round {evaluation.stats_round} is not its candidate's "
            f"({candidate.stats_round})",
        )


def check_gate_counts(number: int, counts: np.ndarray) -> None:
    """A decrypted gate aggregate holds the four histograms, every value finite."""
    if np.ndim(counts) != 1 or np.size(counts) != GATE_VECTOR_LENGTH:
        raise Refused(
            "aggregate_shape",
            f"round {number}: the evaluation aggregate holds {np.size(counts)} values, not the "
            f"gate's {GATE_VECTOR_LENGTH}",
        )
    if not np.all(np.isfinite(counts)):
        raise Refused(
            "aggregate_not_finite", f"round {number}: the evaluation aggregate is not finite"
        )

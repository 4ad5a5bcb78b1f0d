"""Counts in consortium-wide units: the unit a round packs with, and the node's packing."""

from __future__ import annotations

import numpy as np

from he.codec import STATS_COUNT_UNIT, check_headroom, pack_update
from he.errors import HEError
from he.params import CkksParams
from protocol import RoundInfo

# Most banks a sum may hold; a bank keeps its values within 1/256 of the headroom
# (he.codec.headroom_limit). Must equal the portal's MAX_BANKS_PER_ROUND default
# (consortium/settings.py; tests/consortium/test_max_banks.py holds them together).
MAX_BANKS_PER_SUM = 256
# A training round's counts go in units of u rows, u the smallest power of two that
# brings the consortium's rows (the statistics round's total) to at most 2^20 units:
# u = 1 up to 1,048,576 rows, so the small-count floor (sum n >= 20) is untouched, and
# above it the sum of counts stays between 2^19 and 2^20 units, far above that floor.
TRAINING_COUNT_UNITS = 2**20


def training_count_unit(stats_rows: float | None) -> int:
    """The unit ``u`` of a training round whose statistics round counted ``stats_rows`` rows.

    Every member decrypts the same statistics aggregate, so every member derives the same
    ``u``; the portal never decrypts, so it never learns the total. No statistics round: 1.
    """
    if stats_rows is None or stats_rows <= TRAINING_COUNT_UNITS:
        return 1
    if not np.isfinite(stats_rows):
        raise HEError("the statistics round's row count is not finite")
    return 1 << int(np.ceil(np.log2(stats_rows / TRAINING_COUNT_UNITS)))


def round_count_unit(rnd: RoundInfo, stats_rows: float | None) -> int:
    """The unit of ``rnd``'s counts: the protocol's for a statistics or evaluation round
    (both count rows of the bank's data), derived from the statistics round for training."""
    if rnd.kind in ("statistics", "evaluation"):
        return STATS_COUNT_UNIT
    if rnd.is_sketch:  # each bank counts 1: the sum counts banks, not any bank's flows
        return 1
    return training_count_unit(stats_rows if rnd.stats_round is not None else None)


def pack_checked(
    rnd: RoundInfo, values: np.ndarray, n: int, tag: float, unit: int, params: CkksParams
) -> np.ndarray:
    """Pack an update in ``unit``s and check its headroom; HEError says what to change."""
    packed = pack_update(values, n, tag, unit)
    try:
        check_headroom(packed, params, MAX_BANKS_PER_SUM)
    except HEError as exc:
        raise HEError(f"round {rnd.number}: {exc}; {_advice(rnd, unit)}") from exc
    return packed


def _advice(rnd: RoundInfo, unit: int) -> str:
    if rnd.is_evaluation:
        return "the gate's histograms cannot exceed this bank's rows: a bug, please report it"
    if rnd.is_sketch:
        return "a sketch cell holds too many flows: ask for a wider sketch or a shorter window"
    if not rnd.is_training:
        return "a feature's square is too large for this bank's rows: rescale that feature"
    if rnd.stats_round is None:
        return (
            "this bank has too many rows to send its counts in rows: enable "
            "normalize_features in the policy, so counts go in consortium-wide units"
        )
    return f"counts are already in units of {unit} rows: the model's weights are too large"

"""The integrity slot: a keyed tag per bank and round, checked after decrypting an aggregate.

Our own construction, built from HMAC-SHA256 (RFC 2104) used as a PRF; it is not a
published protocol. Every member holds a 32-byte ``integrity.key`` from the key ceremony
that the portal never sees. A bank puts ``t(round, bank)``, a real in [1, 2) derived from
the key, in the last slot of its plaintext; the honest sum's last slot is then the sum of
the manifest's banks' tags, which only members can compute. A vector the operator
encrypted itself, one bank's ciphertext passed off as the sum, an old round's aggregate
and a sum counting a bank twice all miss that value by far more than the CKKS error.

What it does not stop: CKKS is additively malleable, so an operator can add its own
encryption of ``[delta, 0, 0]`` to the genuine sum and keep the tag intact. Binding the
weights themselves needs the nodes to recompute the sum from the signed submissions.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets

import numpy as np

from he.codec import TRAILER_SLOTS, count_unit_check
from he.errors import HEError

INTEGRITY_KEY_BYTES = 32
TAG_CONTEXT = "consortium-integrity-v1"
TAG_BITS = 40
# Tags lie in [1, 2), so a sum over MAX_BANKS_PER_SUM = 256 banks stays below 512: far
# under the 2^30 a 60-bit prime surely holds at scale 2^28 (CkksParams.max_plain_magnitude).
#
# Measured CKKS error on one decrypted slot at the default parameters: standard deviation
# 2.5e-6 for a fresh ciphertext, growing as sqrt(k) for a sum of k (1.1e-5 for 20 banks;
# tests/he/test_integrity.py pins it). The tolerance is 1e-4 up to 20 banks and grows as
# sqrt(k) beyond, so an honest sum is always at least 8.9 standard deviations inside it
# (a false refusal is below 1e-18). A forger who cannot compute the tags must land within
# the tolerance of a sum of k uniform values: about 2 * tolerance * sqrt(6 / (pi k)),
# i.e. under 1e-4 per attempt for every k.
TAG_TOLERANCE = 1e-4
TAG_TOLERANCE_BANKS = 20
COUNT_TOLERANCE = 1e-3


class AggregateRejected(HEError):
    """A decrypted aggregate failed an integrity check; the message says which one."""


def integrity_key_new() -> bytes:
    """A fresh random integrity key for the key ceremony."""
    return secrets.token_bytes(INTEGRITY_KEY_BYTES)


def integrity_key_check(data: bytes) -> bytes:
    """Return ``data`` if it is a well-formed integrity key, else raise HEError."""
    if len(data) != INTEGRITY_KEY_BYTES:
        raise HEError(
            f"the integrity key has {len(data)} bytes, expected {INTEGRITY_KEY_BYTES}; "
            "copy integrity.key unchanged from the consortium's key bundle"
        )
    return data


def tag_value(key: bytes, fingerprint: str, round_number: int, bank: str) -> float:
    """``t(round, bank)``: 40 bits of HMAC-SHA256 mapped to a real in [1, 2).

    40 bits keep the value exact in a float64 and its spacing (2^-40) far below the CKKS
    error, so the tag is as unpredictable as the tolerance allows.
    """
    message = f"{TAG_CONTEXT}|{fingerprint}|{round_number}|{bank}".encode()
    mac = hmac.new(integrity_key_check(key), message, hashlib.sha256).digest()
    return 1.0 + int.from_bytes(mac[: TAG_BITS // 8], "big") / float(2**TAG_BITS)


def tag_tolerance(n_banks: int) -> float:
    """How far an honest sum of ``n_banks`` tags may decrypt from the exact value."""
    return TAG_TOLERANCE * max(1.0, math.sqrt(n_banks / TAG_TOLERANCE_BANKS))


def expected_tag_sum(
    key: bytes, fingerprint: str, round_number: int, banks: list[str] | tuple[str, ...]
) -> float:
    """The tag slot an honest sum of ``banks``' updates decrypts to."""
    if not banks:
        raise AggregateRejected("the manifest lists no inputs")
    if len(set(banks)) != len(banks):
        raise AggregateRejected("the manifest lists a bank more than once")
    return sum(tag_value(key, fingerprint, round_number, bank) for bank in banks)


def check_aggregate(
    values: np.ndarray,
    expected_inputs: list[str] | tuple[str, ...],
    key: bytes,
    fingerprint: str,
    round_number: int,
    count_unit: int = 1,
) -> tuple[np.ndarray, float]:
    """Check a decrypted ``[sum (n_k/u) w_k..., sum n_k/u, sum t_k]``; return (FedAvg, rows).

    ``count_unit`` is the ``u`` the banks packed with (``he.codec.pack_update``); the total
    returned is in rows. Raises AggregateRejected when a value is not finite, the count slot
    is not a positive whole number of rows, or the tag slot is not the sum of
    ``expected_inputs``' tags for this round.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size < TRAILER_SLOTS + 1:
        raise AggregateRejected(f"the aggregate has {values.size} values; too short to check")
    if not np.all(np.isfinite(values)):
        raise AggregateRejected("the aggregate holds a value that is not finite")
    count, tag = float(values[-2]), float(values[-1])
    rows = count_rows(count, count_unit, len(expected_inputs))
    want = expected_tag_sum(key, fingerprint, round_number, expected_inputs)
    if abs(tag - want) > tag_tolerance(len(expected_inputs)):
        raise AggregateRejected(
            f"the integrity slot does not match the {len(expected_inputs)} banks of the "
            f"manifest for round {round_number}; not the sum of their updates"
        )
    return values[:-TRAILER_SLOTS] * (count_unit / rows), rows


def count_rows(count: float, unit: int, n_banks: int) -> float:
    """The rows a count slot in units of ``unit`` stands for; AggregateRejected if implausible.

    With ``unit`` 1 the slot must be within COUNT_TOLERANCE of a positive integer. With a
    larger unit the rows ``count * unit`` must be within the slot's noise bound
    (``tag_tolerance``) times ``unit`` of a positive integer; once that slack reaches half
    a row (units above 1024 at 256 banks, above 4096 at 20) only positivity is left, and
    the tag slot alone tells a sum of updates from anything else.
    """
    unit = count_unit_check(unit)
    rows = count * unit
    whole = float(np.rint(rows))
    slack = COUNT_TOLERANCE if unit == 1 else tag_tolerance(max(n_banks, 1)) * unit
    if whole < 1 or (slack < 0.5 and abs(rows - whole) > slack):
        raise AggregateRejected(
            f"the count slot decodes to {count:.6g} (in units of {unit} rows), not a positive "
            "whole number of rows; wrong key or not a sum of updates"
        )
    return whole

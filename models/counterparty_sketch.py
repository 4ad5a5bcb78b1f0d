"""Cross-bank counterparty sketches: keyed count-min counts of (labelled) flows, as of dates.

Each bank counts, per counterparty account, the flows in and out of it and how many of those
carried a known positive label, into a fixed-size count-min sketch whose cells are chosen by
a keyed hash (HMAC-SHA256). The key is derived with HKDF from the key epoch's
``integrity.key``: 32 random bytes that ``bank-node keygen`` writes for the members only and
the portal never holds (docs/architecture.md, "Update layout"). So every member computes the
same cells for the same account, and the operator, who relays the sums, cannot tell which
account a cell stands for. A new key epoch brings a new key, so old sketches do not link.

As of a date ``D`` a sketch counts only flows with ``D - window <= timestamp < D`` and a
labelled flow only when its label was known before ``D`` (``timestamp + label_delay < D``,
or an explicit ``label_known_at`` column): a row scored at or after ``D`` sees no label from
its own period. Each bank adds Gaussian noise to its own sketch before it is encrypted
(``gaussian_sigma``), so its counts are differentially private by themselves, whatever the
other members do with the sum. Everything here is pure numpy on arrays and bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# The counts kept per account: labelled flows in and out, and all flows in and out.
CHANNELS: tuple[str, ...] = ("labelled_in", "labelled_out", "flows_in", "flows_out")
SKETCH_KEY_INFO = b"consortium-counterparty-sketch-v1"
# One HMAC-SHA256 gives 32 bytes: 4 per row, so at most 8 rows.
MAX_DEPTH = 8
_ROW_BYTES = 4
# Derived features: the counterparty's (and the sender's) counts other members saw.
SKETCH_FEATURE_NAMES: list[str] = [
    "xb_dst_labelled_in", "xb_dst_labelled_out", "xb_dst_flows_in",
    "xb_src_labelled_in", "xb_src_labelled_out", "xb_src_flows_out",
]  # fmt: skip


def sketch_feature_count(spec: object) -> int:
    """Columns the cross-bank features add to a policy's features (0: sketches off).

    The portal derives ``n_features`` with it and the node checks a policy's width with it.
    """
    return len(SKETCH_FEATURE_NAMES) if spec is not None else 0


_FEATURE_CELLS = (("dst", 0), ("dst", 1), ("dst", 2), ("src", 0), ("src", 1), ("src", 3))
# Counts above this are clipped before scaling: beyond it "many" is all a feature says,
# and a noisy cell cannot blow a feature up.
FEATURE_CLIP = 1000.0
_FEATURE_SCALE = math.log1p(FEATURE_CLIP)


@dataclass(frozen=True)
class SketchShape:
    """A count-min sketch of ``depth`` rows by ``width`` cells for each of ``CHANNELS``."""

    depth: int
    width: int

    def __post_init__(self) -> None:
        if not 1 <= self.depth <= MAX_DEPTH:
            raise ValueError(f"depth must be in [1, {MAX_DEPTH}] (got {self.depth})")
        if self.width < 2:
            raise ValueError(f"width must be at least 2 (got {self.width})")

    @property
    def cells(self) -> tuple[int, int, int]:
        return (len(CHANNELS), self.depth, self.width)

    @property
    def size(self) -> int:
        """Values in one sketch: channels x depth x width."""
        return len(CHANNELS) * self.depth * self.width


@dataclass(frozen=True)
class AsOf:
    """Which flows a sketch as of ``date`` counts: a window before it, labels known before it."""

    date: np.datetime64
    window_seconds: int
    label_delay_seconds: int = 0


def sketch_key(secret: bytes, fingerprint: str) -> bytes:
    """The 32-byte HMAC key of the sketches under key epoch ``fingerprint``.

    ``secret`` is the epoch's ``integrity.key``: every member holds it, the operator never
    does. HKDF with its own ``info`` keeps this key independent of the integrity tags.
    """
    if len(secret) < 32:
        raise ValueError("the sketch key needs at least 32 bytes of secret material")
    info = SKETCH_KEY_INFO + b"|" + fingerprint.encode("ascii")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def account_ids(banks: pd.Series, accounts: pd.Series) -> np.ndarray:
    """One identity per account: ids are unique only within a bank (as in models.features)."""
    return (banks.astype(str) + "\x1f" + accounts.astype(str)).to_numpy()


def account_cells(key: bytes, ids: np.ndarray, shape: SketchShape) -> np.ndarray:
    """The cell of each id in each row, ``(len(ids), depth)``: one HMAC per distinct id."""
    unique, inverse = np.unique(np.asarray(ids, dtype=str), return_inverse=True)
    table = np.empty((unique.size, shape.depth), dtype=np.int64)
    for i, name in enumerate(unique):
        mac = hmac.new(key, name.encode("utf-8"), hashlib.sha256).digest()
        for r in range(shape.depth):
            chunk = mac[r * _ROW_BYTES : (r + 1) * _ROW_BYTES]
            table[i, r] = int.from_bytes(chunk, "big") % shape.width
    return table[inverse.ravel()]


def counted(frame: pd.DataFrame, as_of: AsOf) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the rows a sketch as of ``as_of.date`` counts: as flows, and as labelled.

    A flow counts when ``date - window <= timestamp < date``; as labelled when, moreover,
    its label is 1 and was known before ``date`` (``label_known_at`` when the frame has it,
    else ``timestamp + label_delay``).
    """
    stamp = frame["timestamp"].to_numpy().astype("datetime64[s]")
    date = as_of.date.astype("datetime64[s]")
    start = date - np.timedelta64(as_of.window_seconds, "s")
    flows = (stamp >= start) & (stamp < date)
    if "label_known_at" in frame.columns:
        known_at = frame["label_known_at"].to_numpy().astype("datetime64[s]")
    else:
        known_at = stamp + np.timedelta64(as_of.label_delay_seconds, "s")
    labelled = flows & (frame["label"].to_numpy() == 1) & (known_at < date)
    return flows, labelled


def build_sketch(frame: pd.DataFrame, key: bytes, shape: SketchShape, as_of: AsOf) -> np.ndarray:
    """A bank's exact sketch as of ``as_of``: ``(channels, depth, width)`` float64 counts."""
    flows, labelled = counted(frame, as_of)
    sketch = np.zeros(shape.cells, dtype=np.float64)
    if not flows.any():
        return sketch
    rows = np.arange(shape.depth)
    part = frame.loc[flows]
    weight_labelled = labelled[flows].astype(np.float64)
    ones = np.ones(len(part))
    receiver = account_cells(key, account_ids(part["to_bank"], part["to_account"]), shape)
    sender = account_cells(key, account_ids(part["from_bank"], part["from_account"]), shape)
    for channel, cells, weight in (
        (0, receiver, weight_labelled),
        (1, sender, weight_labelled),
        (2, receiver, ones),
        (3, sender, ones),
    ):
        for r in rows:
            np.add.at(sketch[channel, r], cells[:, r], weight)
    return sketch


def build_sketches(
    frame: pd.DataFrame, key: bytes, shape: SketchShape, dates: Sequence[AsOf]
) -> np.ndarray:
    """One sketch per as-of date, stacked: ``(len(dates), channels, depth, width)``."""
    return np.stack([build_sketch(frame, key, shape, as_of) for as_of in dates])


def query(sketch: np.ndarray, cells: np.ndarray, *, noised: bool = False) -> np.ndarray:
    """Estimates ``(len(cells), channels)`` of each id's counts from its ``depth`` cells.

    Exact sketches: the count-min estimate, the smallest of an id's cells, which never
    undercounts (every cell holds the id's count plus those of ids colliding there).
    Noised sketches (``noised``): the mean of its cells. The minimum of ``depth`` cells
    with independent N(0, s^2) noise is biased down by about ``s`` (1.03 s for 4 rows), so
    a count well below the noise would read as zero after clipping; the mean is unbiased
    for the noise, its spread ``s / sqrt(depth)``, at the price of averaging the (small,
    for a wide sketch) overcount of collisions rather than taking the least of it.
    """
    depth = sketch.shape[1]
    picked = sketch[:, np.arange(depth)[None, :], cells]  # (channels, n, depth)
    return (picked.mean(axis=2) if noised else picked.min(axis=2)).T


def flow_sensitivity(shape: SketchShape, n_dates: int) -> float:
    """L2 change of a bank's stacked sketches when one flow is added or removed.

    One flow adds 1 to ``depth`` cells in each of the four channels (receiver in, sender
    out, labelled or not) in every sketch whose window holds it: at most ``n_dates``
    (`dates_per_flow` of the as-of dates).
    """
    return math.sqrt(len(CHANNELS) * shape.depth * n_dates)


def dates_per_flow(dates: Sequence[AsOf]) -> int:
    """The most sketches of ``dates`` whose windows can hold one timestamp.

    A flow at ``t`` is in the sketch as of ``D`` when ``D - window <= t < D``: half-open
    intervals, so the most that overlap all hold the start of one of them. Weekly dates
    with a 28-day window give at most 4, however many dates the spec lists, so the noise
    need not grow with the number of dates beyond that.
    """
    ends = np.array([d.date.astype("datetime64[s]") for d in dates], dtype="datetime64[s]")
    spans = np.array([d.window_seconds for d in dates], dtype="timedelta64[s]")
    starts = ends - spans
    # holds[i, j]: the window of date j holds the start of window i.
    holds = (starts[None, :] <= starts[:, None]) & (starts[:, None] < ends[None, :])
    return int(holds.sum(axis=1).max(initial=0))


def gaussian_sigma(epsilon: float, delta: float, sensitivity: float) -> float:
    """The Gaussian mechanism's noise for (epsilon, delta)-DP (Dwork and Roth, Thm. A.1).

    ``sigma = sensitivity * sqrt(2 ln(1.25 / delta)) / epsilon``; the bound holds for
    ``0 < epsilon <= 1``, which is why the policy refuses a larger epsilon.
    """
    if not 0.0 < epsilon <= 1.0:
        raise ValueError(f"epsilon must be in (0, 1] for the Gaussian mechanism (got {epsilon})")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1) (got {delta})")
    return sensitivity * math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


def noise_rng() -> np.random.Generator:
    """A generator seeded with 128 bits from the operating system (``secrets``)."""
    return np.random.default_rng(secrets.randbits(128))


def add_noise(
    sketches: np.ndarray, sigma: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    """``sketches`` plus independent N(0, sigma^2) noise in every cell (a new array)."""
    if sigma < 0:
        raise ValueError(f"sigma must be non-negative (got {sigma})")
    generator = rng if rng is not None else noise_rng()
    return sketches + generator.normal(0.0, sigma, size=sketches.shape)


def others_sketch(consortium_sum: np.ndarray, own: np.ndarray) -> np.ndarray:
    """What the other members added: the decrypted sum less this bank's own (noised) sketch."""
    if consortium_sum.shape != own.shape:
        raise ValueError(f"sum {consortium_sum.shape} and own sketch {own.shape} differ")
    return consortium_sum - own


def sketch_features(
    others: np.ndarray,
    key: bytes,
    shape: SketchShape,
    frame: pd.DataFrame,
    *,
    noised: bool = True,
) -> np.ndarray:
    """``SKETCH_FEATURE_NAMES`` for each row of ``frame`` from one others-only sketch.

    ``noised``: the sketch holds the members' DP noise (a node's always does), so each
    count is the mean of the account's cells, not their minimum (`query`). Counts are
    clipped to ``[0, FEATURE_CLIP]`` (noise can make them negative) and scaled by
    ``log1p(x) / log1p(FEATURE_CLIP)`` into [0, 1].
    """
    if len(frame) == 0:
        return np.zeros((0, len(SKETCH_FEATURE_NAMES)), dtype=np.float32)
    ends = {
        end: query(
            others,
            account_cells(key, account_ids(frame[f"{side}_bank"], frame[f"{side}_account"]), shape),
            noised=noised,
        )
        for end, side in (("dst", "to"), ("src", "from"))
    }
    columns = [ends[end][:, channel] for end, channel in _FEATURE_CELLS]
    counts = np.clip(np.column_stack(columns), 0.0, FEATURE_CLIP)
    return (np.log1p(counts) / _FEATURE_SCALE).astype(np.float32)


def features_as_of(
    others: np.ndarray,
    dates: Sequence[AsOf],
    key: bytes,
    shape: SketchShape,
    frame: pd.DataFrame,
    *,
    noised: bool = True,
) -> np.ndarray:
    """Each row's features from the latest sketch dated on or before its own timestamp.

    ``others`` is ``(len(dates), channels, depth, width)``. A sketch as of ``D`` counts
    only flows before ``D`` and labels known before ``D``, so a row at ``t >= D`` sees
    nothing of its own period; a row before the first date gets zeros (no sketch yet).
    ``noised`` as in `sketch_features`.
    """
    out = np.zeros((len(frame), len(SKETCH_FEATURE_NAMES)), dtype=np.float32)
    if len(frame) == 0 or not dates:
        return out
    stamp = frame["timestamp"].to_numpy().astype("datetime64[s]")
    ordered = np.argsort([d.date.astype("datetime64[s]") for d in dates], kind="stable")
    starts = np.array([dates[i].date.astype("datetime64[s]") for i in ordered])
    which = np.searchsorted(starts, stamp, side="right") - 1  # last date <= t
    for slot in np.unique(which[which >= 0]):
        rows = np.flatnonzero(which == slot)
        index = int(ordered[slot])
        out[rows] = sketch_features(others[index], key, shape, frame.iloc[rows], noised=noised)
    return out

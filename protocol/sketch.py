"""The counterparty sketch a policy may ask for: its shape, as-of dates, window and DP budget.

A policy with ``counterparty_sketch`` set runs a ``"sketch"`` round before training: every
bank sends its noised count-min sketches of (labelled) flows per counterparty
(``models.counterparty_sketch``), summed under secure aggregation like a statistics round.
The values are checked here, on both sides, so a bad spec is a ``ProtocolError`` naming
the field, and the vector length the portal derives is the one every node packs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from itertools import pairwise
from typing import Any

from protocol.codec import decode, encode
from protocol.errors import ProtocolError

# The count-min sketch keeps four counts per account (models.counterparty_sketch.CHANNELS).
SKETCH_CHANNELS = 4
MAX_SKETCH_DEPTH = 8  # one HMAC-SHA256 gives 4 bytes to each of at most 8 rows
MAX_SKETCH_DATES = 16
# Large enough for 16 dates x 4 channels x 4 rows x 4096 cells; an upload of this many
# values is about 33 MB at the default CKKS parameters.
MAX_SKETCH_VALUES = 2**20
# More contributors than any consortium we plan for; the policy also keeps it below min_banks.
MAX_NOISE_SPLIT = 1000


@dataclass(frozen=True)
class SketchSpec:
    """What every bank's sketch round contribution holds and how it is noised.

    ``as_of`` are ISO dates ``D``, strictly increasing: one sketch each, counting flows in
    ``[D - window_days, D)`` and labels known before ``D`` (a label is taken as known
    ``label_delay_days`` after its flow). ``epsilon``/``delta``: the Gaussian mechanism over
    all of a bank's sketches for one flow (docs/threat-model.md).

    ``noise_split``: how many contributors' noise that mechanism's variance is split over
    (distributed DP: Truex et al., "A Hybrid Approach to Privacy-Preserving Federated
    Learning", AISec 2019; Kairouz et al., "The Distributed Discrete Gaussian Mechanism for
    Federated Learning with Secure Aggregation", ICML 2021). Each bank adds ``σ² / t``, so
    the guarantee for a bank holds against any coalition of members that leaves at least
    ``t`` contributors, that bank included, outside it. 1 (the default): a bank's own noise
    protects it even against every other member together. The policy keeps ``t`` at most
    ``min_banks - 1``, so that against any single member it always holds.
    """

    as_of: tuple[str, ...]
    window_days: int
    label_delay_days: int
    depth: int
    width: int
    epsilon: float
    delta: float
    # Last, with a default: specs stored before it existed read as 1 (each bank alone).
    noise_split: int = 1

    def __post_init__(self) -> None:
        self._check_dates()
        if not 1 <= self.window_days <= 366:
            raise ProtocolError("window_days", f"must be in [1, 366] (got {self.window_days})")
        if not 0 <= self.label_delay_days <= 366:
            raise ProtocolError(
                "label_delay_days", f"must be in [0, 366] (got {self.label_delay_days})"
            )
        if not 1 <= self.depth <= MAX_SKETCH_DEPTH:
            raise ProtocolError("depth", f"must be in [1, {MAX_SKETCH_DEPTH}] (got {self.depth})")
        if self.width < 2 or self.width & (self.width - 1):
            raise ProtocolError("width", f"must be a power of two of at least 2 (got {self.width})")
        if self.values > MAX_SKETCH_VALUES:
            raise ProtocolError(
                "width",
                f"dates x {SKETCH_CHANNELS} x depth x width is {self.values}, above "
                f"{MAX_SKETCH_VALUES}: use fewer dates, rows or cells",
            )
        if not 0.0 < self.epsilon <= 1.0:
            raise ProtocolError(
                "epsilon", f"must be in (0, 1], the Gaussian mechanism's range (got {self.epsilon})"
            )
        if not 0.0 < self.delta <= 1e-3:
            raise ProtocolError("delta", f"must be in (0, 0.001] (got {self.delta})")
        if not 1 <= self.noise_split <= MAX_NOISE_SPLIT:
            raise ProtocolError(
                "noise_split",
                f"must be in [1, {MAX_NOISE_SPLIT}]: the number of banks whose noise together "
                f"gives the (epsilon, delta) guarantee (got {self.noise_split})",
            )

    def _check_dates(self) -> None:
        if not 1 <= len(self.as_of) <= MAX_SKETCH_DATES:
            raise ProtocolError("as_of", f"must list 1 to {MAX_SKETCH_DATES} dates")
        try:
            parsed = [date.fromisoformat(text) for text in self.as_of]
        except ValueError as exc:
            raise ProtocolError("as_of", f"must be ISO dates (YYYY-MM-DD): {exc}") from exc
        if any(b <= a for a, b in pairwise(parsed)):
            raise ProtocolError("as_of", "dates must be strictly increasing")

    @property
    def values(self) -> int:
        """Sketch values in one bank's update, before the count and tag slots."""
        return len(self.as_of) * SKETCH_CHANNELS * self.depth * self.width

    @classmethod
    def from_dict(cls, data: object) -> SketchSpec:
        return decode(cls, data)

    def to_dict(self) -> dict[str, Any]:
        """The spec's fields; ``noise_split`` only when it is not 1, so that a spec written
        before the field existed encodes, and a policy that holds it hashes, as it did."""
        data = encode(self)
        if data["noise_split"] == 1:
            del data["noise_split"]
        return data

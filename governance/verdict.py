"""Signed gate verdicts: a bank's reading of an evaluation round, in a form anyone can check.

After an evaluation round publishes, every member decrypts the same summed histograms and
computes the same figures (``models.gate.gate_decide``); each signs what it found. The
portal records a decision only when the charter's approval number of distinct active
members signed the same decision (``verdict_decision``), so an operator who stores or
relays verdicts can neither invent an adoption nor hide a rejection; a node never takes
the portal's word for it anyway and recomputes the decision from the aggregate.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance.encoding import (
    canonical_json,
    check_hex64,
    check_int,
    check_slug,
    check_timestamp,
    read_object,
    strict_json_loads,
)
from governance.errors import RosterError
from he.signing import sign, verify

VERDICT_DOMAIN = b"consortium-gate-verdict-v1\n"
# Figures are signed rounded to this many decimals: every member computes them from the
# same decrypted floats, and the rounding keeps the signed text short and stable.
FIGURE_DECIMALS = 6
DECISIONS = ("adopt", "reject")


@dataclass(frozen=True)
class GateVerdict:
    """Bank ``bank_id``'s decision on candidate ``candidate_round``, read from evaluation
    round ``round_number`` whose published aggregate has digest ``aggregate_digest``."""

    consortium_id: str
    round_number: int
    candidate_round: int
    aggregate_digest: str
    decision: str
    candidate_auprc: float
    current_auprc: float
    candidate_recall: float
    current_recall: float
    bank_id: str
    created_at: str

    def __post_init__(self) -> None:
        check_slug(self.consortium_id, "verdict.consortium_id")
        check_int(self.round_number, "verdict.round_number", minimum=1)
        check_int(self.candidate_round, "verdict.candidate_round", minimum=1)
        check_hex64(self.aggregate_digest, "verdict.aggregate_digest")
        if self.decision not in DECISIONS:
            raise RosterError(
                f"verdict.decision must be one of {', '.join(DECISIONS)}, got {self.decision!r}",
                code="bad_field",
            )
        for name in ("candidate_auprc", "current_auprc", "candidate_recall", "current_recall"):
            _check_figure(getattr(self, name), f"verdict.{name}")
        check_slug(self.bank_id, "verdict.bank_id")
        check_timestamp(self.created_at, "verdict.created_at")

    @property
    def adopt(self) -> bool:
        return self.decision == "adopt"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> GateVerdict:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**read_object(data, "verdict", names))

    @classmethod
    def from_json(cls, text: str | bytes) -> GateVerdict:
        return cls.from_dict(strict_json_loads(text))

    def canonical(self) -> bytes:
        return canonical_json(self.to_dict())


def figure(value: float) -> float:
    """A figure as it is signed: rounded to ``FIGURE_DECIMALS``."""
    return round(float(value), FIGURE_DECIMALS)


def _check_figure(value: object, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RosterError(f"{field} must be a number, got {value!r}", code="bad_field")
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise RosterError(f"{field} must be between 0 and 1, got {value!r}", code="bad_field")


def verdict_message(verdict: GateVerdict) -> bytes:
    """The bytes a bank signs: domain-separated from every other signature it makes."""
    return VERDICT_DOMAIN + verdict.canonical()


def sign_verdict(verdict: GateVerdict, private_key: Ed25519PrivateKey) -> str:
    return sign(private_key, verdict_message(verdict))


def verify_verdict(verdict: GateVerdict, signature: str, public_key: str) -> bool:
    """True when ``signature`` is ``public_key``'s signature of ``verdict``; never raises."""
    return verify(public_key, verdict_message(verdict), signature)


def verdict_decision(
    verdicts: Iterable[GateVerdict], threshold: int, aggregate_digest: str
) -> str | None:
    """``"adopt"`` or ``"reject"`` once ``threshold`` distinct banks signed it, else None.

    Only verdicts about ``aggregate_digest`` count, one per bank (its first). Callers pass
    verdicts whose signatures they have checked under the banks' roster keys.
    """
    first: dict[str, str] = {}
    for v in verdicts:
        if v.aggregate_digest == aggregate_digest:
            first.setdefault(v.bank_id, v.decision)
    tally: Mapping[str, int] = {d: list(first.values()).count(d) for d in DECISIONS}
    reached = [d for d in DECISIONS if tally[d] >= max(1, threshold)]
    if len(reached) == 1:
        return reached[0]
    return None

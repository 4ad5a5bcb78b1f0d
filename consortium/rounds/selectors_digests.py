"""Whether the banks' nodes produced the same model for a round (the digests they reported)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from consortium.rounds.models import MetricReport


@dataclass(frozen=True)
class ModelDigests:
    """The model digests reported for one round: by bank, and whether any two differ."""

    by_bank: dict[str, str]

    @property
    def distinct(self) -> list[str]:
        return sorted(set(self.by_bank.values()))

    @property
    def diverged(self) -> bool:
        return len(self.distinct) > 1


def model_digests(reports: Iterable[MetricReport]) -> ModelDigests:
    """From reports already loaded with their banks (no query of its own)."""
    return ModelDigests({r.bank.slug: r.model_digest for r in reports if r.model_digest})

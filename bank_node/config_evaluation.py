"""The ``[evaluation]`` table of the node config: how the bank's own data is split (issue 14).

Kept apart from ``bank_node.config`` (which registers the table and re-exports
`Evaluation`): its reader raises ``ValueError`` and ``config`` turns that into a
``ConfigError`` naming the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

# A test period with fewer positives than this gives AUPRC and recall figures that move by
# several points when one transaction changes side: the node warns (log and metric).
MIN_TEST_POSITIVES = 20


@dataclass(frozen=True)
class Evaluation:
    """How the bank's own data is split into train, validation and test (``[evaluation]``).

    Without dates: the first 60% of the file's time span trains, the next 20% validates
    (it picks the alert threshold), the last 20% tests. With ``train_before`` (and
    optionally ``evaluate_from``, which defaults to it): rows before ``train_before``
    train, except the last ``validation_fraction`` of their time span, which validates;
    rows from ``evaluate_from`` on test; rows in between (a gap a bank may leave for
    late labels) are not used. ``min_test_positives`` is the fewest positive test rows
    before the node warns that its figures are unreliable.
    """

    train_before: date | None = None
    evaluate_from: date | None = None
    validation_fraction: float = 0.25
    min_test_positives: int = MIN_TEST_POSITIVES

    @property
    def by_date(self) -> bool:
        return self.train_before is not None

    def describe(self) -> str:
        """One line for logs and reports: which split this is."""
        if self.train_before is None:
            return "60/20/20 of the file's time span (no [evaluation] dates set)"
        return (
            f"train before {self.train_before} (its last {self.validation_fraction:.0%} of "
            f"time validates), test from {self.evaluate_from}"
        )


EVALUATION_REFERENCE: dict[str, tuple[str | None, str]] = {
    "evaluation": (
        None,
        "How the bank's own data is split; without dates, 60/20/20 of the file's time span "
        "(docs/own-data.md).",
    ),
    "evaluation.train_before": (
        '"2026-03-21"',
        "A date (YYYY-MM-DD): rows before it train (the last part of their span validates).",
    ),
    "evaluation.evaluate_from": (
        '"2026-03-21"',
        "A date: rows from it on test; defaults to train_before (a later date leaves a gap "
        "for late labels).",
    ),
    "evaluation.validation_fraction": (
        "0.25",
        "With dates: the share of the training span, at its end, that picks the threshold.",
    ),
    "evaluation.min_test_positives": (
        "20",
        "Warn (log and metric) when the test set has fewer positive rows than this.",
    ),
}


def _date(name: str, value: Any, base: Path) -> date:
    """A TOML date (2024-03-21) or the same as a string ("2024-03-21")."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f'{name} must be a date like "2024-03-21", not {value!r}')


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, not {value!r}")
    return float(value)


def _fraction(name: str, value: Any, base: Path) -> float:
    number = _number(name, value)
    if not 0 < number < 1:
        raise ValueError(f"{name} must lie strictly between 0 and 1, not {value!r}")
    return number


def _integer(name: str, value: Any, base: Path) -> int:
    return int(_number(name, value))


EVALUATION_READERS: dict[str, Callable[[str, Any, Path], Any]] = {
    "train_before": _date,
    "evaluate_from": _date,
    "validation_fraction": _fraction,
    "min_test_positives": _integer,
}


def read_evaluation(name: str, value: dict[str, Any], base: Path) -> Evaluation:
    """The ``[evaluation]`` table; every key optional, unknown keys refused."""
    unknown = set(value) - set(EVALUATION_READERS)
    if unknown:
        raise ValueError(f"unknown field(s) in [{name}]: {', '.join(sorted(unknown))}")
    read = {k: EVALUATION_READERS[k](f"{name}.{k}", v, base) for k, v in value.items()}
    before, start = read.get("train_before"), read.get("evaluate_from")
    if before is None and start is not None:
        raise ValueError(
            f"{name}.evaluate_from is set without {name}.train_before; set both "
            f'(e.g. train_before = "2024-03-21" and evaluate_from = "2024-03-21")'
        )
    if before is not None and start is None:
        read["evaluate_from"] = start = before
    if before is not None and start is not None and start < before:
        raise ValueError(
            f"{name}.evaluate_from ({start}) is before {name}.train_before ({before}): "
            "the test period would overlap the training data; set evaluate_from on or after "
            "train_before"
        )
    return Evaluation(**read)

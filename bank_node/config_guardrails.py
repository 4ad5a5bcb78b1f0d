"""The ``[guardrails]`` table of the node config: what this bank accepts, whatever was agreed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bank_node.config_readers import ConfigError, as_count, as_flag, as_number, refuse_unknown


@dataclass(frozen=True)
class Guardrails:
    """What this bank accepts, whatever the consortium agreed (the ``[guardrails]`` table).

    Like a site's own authorisation policy in other federated frameworks: a round policy
    outside these limits is refused by this node even when the roster approved it.
    ``None`` (or an empty list) means no limit of the bank's own.
    """

    # Fewest distinct banks a round may need (policy min_banks) and an aggregate may sum.
    min_cohort: int = 3
    dp_required: bool = False
    epsilon_ceiling: float | None = None
    max_rounds_per_day: int | None = None
    max_model_parameters: int | None = None
    # Key epoch fingerprints (64 hex) this bank accepts; empty: those the roster has in force.
    accepted_key_epochs: tuple[str, ...] = ()
    # Largest ||new global model - previous|| / ||previous|| this bank adopts (None: any).
    max_update_ratio: float | None = None


def _epochs(path: Path, name: str, value: Any) -> tuple[str, ...]:
    ok = isinstance(value, list) and all(
        isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)
        for v in value
    )
    if not ok:
        raise ConfigError(f"{path}: {name} must be a list of 64-hex key epoch fingerprints")
    return tuple(value)


def _ceiling(path: Path, name: str, value: Any) -> float:
    number = as_number(path, name, value)
    if number <= 0:
        raise ConfigError(f"{path}: {name} must be > 0, not {value!r}")
    return number


GUARDRAIL_READERS: dict[str, Callable[[Path, str, Any], Any]] = {
    "min_cohort": as_count,
    "dp_required": as_flag,
    "epsilon_ceiling": _ceiling,
    "max_rounds_per_day": as_count,
    "max_model_parameters": as_count,
    "accepted_key_epochs": _epochs,
    "max_update_ratio": _ceiling,
}


def read_guardrails(path: Path, name: str, value: Any) -> Guardrails:
    """The ``[guardrails]`` table; every key optional, unknown keys refused."""
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    refuse_unknown(path, name, value, GUARDRAIL_READERS)
    read = {k: GUARDRAIL_READERS[k](path, f"{name}.{k}", v) for k, v in value.items()}
    if read.get("min_cohort", 3) < 3:
        raise ConfigError(
            f"{path}: {name}.min_cohort must be at least 3: with two banks each learns the "
            "other's update from the aggregate by subtraction"
        )
    return Guardrails(**read)


# Its entries in the reference of every field (config.FIELD_REFERENCE), in this order.
GUARDRAILS_REFERENCE: dict[str, tuple[str | None, str]] = {
    "guardrails": (None, "What this bank accepts, whatever the consortium approved."),
    "guardrails.min_cohort": (
        None,
        "Fewest distinct banks in a round or an aggregate; never below 3.",
    ),
    "guardrails.dp_required": (None, "Refuse a policy without differential privacy."),
    "guardrails.epsilon_ceiling": (
        "8.0",
        "Refuse a policy whose target epsilon is higher; unset: no ceiling.",
    ),
    "guardrails.max_rounds_per_day": ("24", "Refuse more rounds than this a day; unset: none."),
    "guardrails.max_model_parameters": (
        "100000",
        "Refuse a model with more parameters; unset: no limit.",
    ),
    "guardrails.accepted_key_epochs": (
        None,
        "Key epoch fingerprints (64 hex) this bank accepts; []: those the roster has in force.",
    ),
    "guardrails.max_update_ratio": (
        "2.0",
        "Refuse a published model further than this from the model it was trained from "
        "(L2 norm of the difference over the previous model's norm); unset: no limit.",
    ),
}

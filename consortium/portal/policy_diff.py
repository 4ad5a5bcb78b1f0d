"""What changed between two policy versions, field by field, in words ("Minimum banks 10 → 12")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from consortium.rounds.models import POLICY_FIELDS

# Short names for the diff, in the order of POLICY_FIELDS (the form's longer labels explain).
LABELS: dict[str, str] = {
    "local_epochs": "Local epochs",
    "batch_size": "Batch size",
    "learning_rate": "Learning rate",
    "fedprox_mu": "FedProx μ",
    "min_banks": "Minimum banks",
    "deadline": "Deadline",
    "max_rounds": "Maximum rounds",
    "max_consecutive_failures": "Stop after failed rounds in a row",
    "normalize_features": "Feature statistics round first",
    "dp_target_epsilon": "Privacy budget ε",
    "dp_delta": "DP δ",
    "dp_max_grad_norm": "Gradient clipping norm",
    "dp_noise_multiplier": "Noise multiplier",
    "secure_aggregation": "Secure aggregation",
    "aggregate_checkers": "Aggregate checkers",
    "max_bank_share": "Largest share of rows per bank",
    "update_clip_norm": "Update clip norm",
    "gate_tolerance": "Evaluation gate tolerance",
    "gate_alert_rate": "Gate alert rate",
    "server_optimizer": "Server optimiser",
    "server_lr": "Server learning rate",
    "server_momentum": "Server momentum",
    "server_beta1": "Server β1",
    "server_beta2": "Server β2",
    "server_tau": "Server τ",
}

# What an empty optional field means, in words.
NONE_WORDS: dict[str, str] = {
    "dp_target_epsilon": "off",
    "dp_noise_multiplier": "derived from the budget",
    "max_bank_share": "no cap",
    "update_clip_norm": "off",
    "gate_tolerance": "no gate",
}

MODEL_LABELS: dict[str, str] = {
    "kind": "Model kind",
    "hidden": "Hidden layer widths",
    "seed": "Initial-weights seed",
    "loss": "Loss",
    "pos_weight": "Positive-class weight",
    "lr": "Model learning rate",
    "focal_gamma": "Focal gamma",
    "fedprox_mu": "Model's FedProx μ",
    "weight_decay": "Weight decay",
}

CKKS_LABELS: dict[str, str] = {
    "poly_modulus_degree": "CKKS ring size",
    "coeff_mod_bit_sizes": "CKKS primes (bits)",
    "global_scale_bits": "CKKS scale (bits)",
}


@dataclass(frozen=True)
class Change:
    """One field that differs: its name (``model_spec.hidden`` for a part), label, values."""

    field: str
    label: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.label} {self.old} → {self.new}"


def duration_words(value: timedelta) -> str:
    """``1 h 30 min``, ``45 min`` or ``20 s``."""
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    parts.append(f"{secs} s" if secs or not (hours or minutes) else "")
    return " ".join(p for p in parts if p)


def value_words(field: str, value: Any) -> str:
    """One policy value as the diff shows it."""
    if value is None:
        return NONE_WORDS.get(field, "none")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, timedelta):
        return duration_words(value)
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) if value else "none"
    return str(value)


def _part_words(key: str, value: Any) -> str:
    if value is None:
        return "default"
    if isinstance(value, list):  # layer widths, CKKS primes
        return value_words(key, value)
    return str(value)


def _parts(
    field: str, labels: Mapping[str, str], old: Mapping[str, Any], new: Mapping[str, Any]
) -> list[Change]:
    """The keys of a JSON field that differ, known keys first in their order."""
    keys = [*labels, *sorted((set(old) | set(new)) - set(labels))]
    return [
        Change(
            f"{field}.{k}", labels.get(k, k), _part_words(k, old.get(k)), _part_words(k, new.get(k))
        )
        for k in keys
        # 2 and 2.0 are equal numbers but not the same JSON (nor the same policy digest)
        if old.get(k) != new.get(k) or type(old.get(k)) is not type(new.get(k))
    ]


PARTS: dict[str, Mapping[str, str]] = {"model_spec": MODEL_LABELS, "ckks_params": CKKS_LABELS}


def policy_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every operator-chosen field whose value differs from ``old`` to ``new`` (mappings of
    ``POLICY_FIELDS``), the model spec and CKKS parameters key by key."""
    changes: list[Change] = []
    for field in POLICY_FIELDS:
        before, after = old.get(field), new.get(field)
        if field in PARTS:
            changes += _parts(field, PARTS[field], before or {}, after or {})
        elif before != after:
            changes.append(
                Change(field, LABELS[field], value_words(field, before), value_words(field, after))
            )
    return changes


def policy_values(policy: Any) -> dict[str, Any]:
    """A policy's operator-chosen fields, for ``policy_diff``."""
    return {field: getattr(policy, field) for field in POLICY_FIELDS}

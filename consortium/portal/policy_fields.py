"""The policy form's structured fields: the model spec field by field, the CKKS parameters
picked from a registered key epoch (never typed, never a raw JSON box)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from django import forms

from consortium.rounds.models import KeyEpoch
from he.errors import HEError
from he.params import CkksParams
from protocol import default_ckks_params

# What ``models.nets.build_model`` accepts, repeated here because importing it loads torch
# on every portal request; tests/portal/test_policy_diff.py holds the two lists equal.
MODEL_KINDS = [("mlp", "Feed-forward network (mlp)")]
LOSSES = ("bce", "focal")

# Widths beyond this are refused by the form before the service estimates the update's
# size: a typo such as 320000 should read as a field error, not as a size limit.
MAX_LAYER_WIDTH = 4096
MAX_LAYERS = 8

# spec key -> (form field, label, help, lower bound, bound is inclusive). Blank means the key
# is left out and ``models.nets.FraudMLP``'s default applies, so a spec saved without a key
# is saved again without it (its canonical JSON and digest stay the same).
NUMBER_KEYS: dict[str, tuple[str, str, str, float, bool]] = {
    "pos_weight": (
        "model_pos_weight",
        "Positive-class weight",
        "Weight of fraud rows in the loss, above 0 (blank: 1).",
        0.0,
        False,
    ),
    "lr": ("model_lr", "Model learning rate", "Adam's rate inside the model, above 0.", 0.0, False),
    "focal_gamma": (
        "model_focal_gamma",
        "Focal gamma",
        "For the focal loss, 0 or more (blank: 2).",
        0.0,
        True,
    ),
    "fedprox_mu": (
        "model_fedprox_mu",
        "Model's FedProx μ",
        "0 or more (blank: 0).",
        0.0,
        True,
    ),
    "weight_decay": (
        "model_weight_decay",
        "Weight decay",
        "Adam's L2 penalty, 0 or more (blank: 0).",
        0.0,
        True,
    ),
}
SPEC_KEYS = frozenset({"kind", "hidden", "seed", "loss", *NUMBER_KEYS})

_INTEGER = re.compile(r"[+-]?\d+")


class JsonNumberField(forms.Field):
    """A number kept as it is written: "10" stays an integer and "10.0" a float, so that a
    value shown from a saved spec is saved back with the same JSON."""

    def __init__(self, *, minimum: float, inclusive: bool, **kwargs: Any) -> None:
        super().__init__(required=False, widget=forms.TextInput, **kwargs)
        self.minimum, self.inclusive = minimum, inclusive

    def to_python(self, value: Any) -> int | float | None:
        text = "" if value is None else str(value).strip()
        if not text:
            return None
        if len(text) > 40:
            raise forms.ValidationError("Enter a number of at most 40 characters.")
        try:
            number: int | float = int(text) if _INTEGER.fullmatch(text) else float(text)
        except ValueError as exc:
            raise forms.ValidationError("Enter a number, e.g. 2.5.") from exc
        if not math.isfinite(number):
            raise forms.ValidationError("Enter a finite number.")
        low = self.minimum
        if number < low or (number == low and not self.inclusive):
            word = "at least" if self.inclusive else "above"
            raise forms.ValidationError(f"Must be {word} {low:g}.")
        return number


def hidden_text(hidden: Iterable[int] | None) -> str:
    """Layer widths as a person types them: "32, 16"; "none" for no hidden layer."""
    if hidden is None:
        return ""
    widths = list(hidden)
    return ", ".join(str(w) for w in widths) if widths else "none"


def parse_hidden(text: str) -> list[int] | None:
    """The widths in ``text``; None for a blank field (the model's default layers)."""
    text = text.strip()
    if not text:
        return None
    if text.lower() == "none":
        return []
    parts = [p.strip() for p in text.replace(";", ",").split(",")]
    if not all(re.fullmatch(r"\d+", p) for p in parts):
        raise forms.ValidationError(
            "Whole numbers separated by commas, e.g. 32, 16 (or none for no hidden layer)."
        )
    widths = [int(p) for p in parts]
    if any(not 1 <= w <= MAX_LAYER_WIDTH for w in widths):
        raise forms.ValidationError(f"Each layer has 1 to {MAX_LAYER_WIDTH} units.")
    if len(widths) > MAX_LAYERS:
        raise forms.ValidationError(f"At most {MAX_LAYERS} layers.")
    return widths


def _choice_errors(allowed: str) -> dict[str, str]:
    return {
        "invalid_choice": f"%(value)s is not one of the choices ({allowed}).",
        "required": f"Choose one ({allowed}).",
    }


def model_spec_fields(spec: Mapping[str, Any]) -> dict[str, forms.Field]:
    """The form fields of a model spec, in the order the page shows them, filled from
    ``spec``."""
    fields: dict[str, forms.Field] = {
        "model_kind": forms.ChoiceField(
            choices=MODEL_KINDS,
            label="Model kind",
            initial=spec.get("kind", "mlp"),
            error_messages=_choice_errors("mlp"),
        ),
        "model_hidden": forms.CharField(
            required=False,
            max_length=200,
            label="Hidden layer widths",
            help_text="Units per hidden layer, e.g. 32, 16; none for no hidden layer "
            "(blank: 32, 16).",
            initial=hidden_text(spec.get("hidden")),
        ),
        "model_seed": forms.IntegerField(
            required=False,
            min_value=0,
            max_value=2**63 - 1,
            label="Initial-weights seed",
            help_text="Every node draws the same first model from it (blank: 0).",
            initial=spec.get("seed"),
            error_messages={
                key: "A whole number from 0 to 2^63 - 1."
                for key in ("invalid", "min_value", "max_value")
            },
        ),
        "model_loss": forms.ChoiceField(
            required=False,
            choices=[("", "default (bce)")] + [(loss, loss) for loss in LOSSES],
            label="Loss",
            help_text="bce: weighted binary cross-entropy; focal: focal loss.",
            initial=spec.get("loss", ""),
            error_messages=_choice_errors(" or ".join(LOSSES)),
        ),
    }
    for key, (name, label, help_text, low, inclusive) in NUMBER_KEYS.items():
        value = spec.get(key)
        fields[name] = JsonNumberField(
            minimum=low,
            inclusive=inclusive,
            label=label,
            help_text=help_text,
            initial="" if value is None else repr(value),
        )
    return fields


def model_spec_from(cleaned: Mapping[str, Any]) -> dict[str, Any]:
    """The spec the fields describe; a blank optional field leaves its key out."""
    spec: dict[str, Any] = {"kind": cleaned["model_kind"]}
    optional = {
        "hidden": cleaned.get("model_hidden"),
        "seed": cleaned.get("model_seed"),
        "loss": cleaned.get("model_loss") or None,
        **{key: cleaned.get(name) for key, (name, *_) in NUMBER_KEYS.items()},
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    return spec


def model_words(spec: Mapping[str, Any]) -> str:
    """A spec in words: ``mlp; hidden layers 32, 16; seed 7; loss bce``."""
    names = {"hidden": "hidden layers", "lr": "learning rate", "pos_weight": "positive weight"}
    parts = [str(spec.get("kind", "?"))]
    # In the form's order, whatever order the database kept the keys in (jsonb sorts them).
    first = [k for k in ("hidden", "seed", "loss", *NUMBER_KEYS) if k in spec]
    for key in [*first, *(k for k in spec if k not in first)]:
        value = spec[key]
        if key != "kind":
            shown = hidden_text(value) if key == "hidden" else value
            parts.append(f"{names.get(key, key.replace('_', ' '))} {shown}")
    return "; ".join(parts)


# --- CKKS parameters -----------------------------------------------------------------------


def ckks_key(params: Mapping[str, Any]) -> str:
    """A parameter set as a choice's value: its JSON with sorted keys (ints stay ints)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def ckks_words(params: Mapping[str, Any]) -> str:
    """A parameter set in words: ring size, primes and scale."""
    try:
        p = CkksParams.from_dict(dict(params))
    except (HEError, TypeError, ValueError, KeyError):
        return ckks_key(params)
    primes = ", ".join(str(b) for b in p.coeff_mod_bit_sizes)
    return (
        f"ring {p.poly_modulus_degree} ({p.slots} values per ciphertext), "
        f"primes of {primes} bits, scale 2^{p.global_scale_bits}"
    )


def ckks_choices(
    epochs: Iterable[KeyEpoch], current: Mapping[str, Any] | None, current_label: str
) -> list[tuple[str, str]]:
    """One choice per distinct parameter set of the registered key epochs (newest first),
    plus ``current`` (the base version's set) when no epoch has it, or the defaults when no
    epoch is registered yet."""
    seen: dict[str, list[str]] = {}
    params_of: dict[str, Mapping[str, Any]] = {}
    for epoch in epochs:
        key = ckks_key(epoch.ckks_params)
        seen.setdefault(key, []).append(
            f"epoch {epoch.number}{' (active)' if epoch.active else ''}"
        )
        params_of[key] = epoch.ckks_params
    choices = [
        (key, f"Key {', '.join(names)}: {ckks_words(params_of[key])}")
        for key, names in seen.items()
    ]
    extra = current if current is not None else (None if seen else default_ckks_params())
    if extra is not None and ckks_key(extra) not in seen:
        label = current_label if current is not None else "defaults (no key epoch registered yet)"
        choices.append((ckks_key(extra), f"{label}: {ckks_words(extra)}"))
    return choices


def ckks_field(epochs: list[KeyEpoch], current: Mapping[str, Any] | None, label: str) -> Any:
    """The CKKS parameters as a choice among the key epochs' sets."""
    choices = ckks_choices(epochs, current, label)
    active = next((e for e in epochs if e.active), None)
    if current is not None:
        initial = ckks_key(current)
    elif active is not None:
        initial = ckks_key(active.ckks_params)
    else:
        initial = choices[0][0]
    return forms.TypedChoiceField(
        choices=choices,
        coerce=json.loads,
        label="CKKS parameters",
        help_text="Those of a registered key epoch: a round is encrypted under the active "
        "epoch, whose parameters the policy must match.",
        initial=initial,
        error_messages={
            "invalid_choice": "Choose the parameters of a registered key epoch.",
            "required": "Choose the parameters of a registered key epoch.",
        },
    )

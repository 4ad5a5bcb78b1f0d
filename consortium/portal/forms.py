"""Forms of the portal. They check types and shapes; the domain rules live in the services,
whose refusals (``ApplicationError``) are attached to the form so the person sees why."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any, cast

from django import forms
from django.utils import timezone

from consortium.api.errors import ApplicationError, refusal_record
from consortium.members.models import Bank
from consortium.portal.policy_fields import (
    ckks_field,
    model_spec_fields,
    model_spec_from,
    parse_hidden,
)
from consortium.portal.selectors_policies import key_epochs_for_policies
from consortium.portal.services import AccountRole
from consortium.rounds.models import POLICY_FIELDS, KeyEpoch, RoundPolicy
from protocol import MIN_BANKS_FLOOR, MIN_BANKS_FLOOR_TEXT, default_model_spec


class PortalForm(forms.Form):
    """Labels without Django's trailing colon: the layout already sets them apart."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class ServiceErrorsMixin:
    """Attach a service's refusal to the fields it names, or to the whole form."""

    field_aliases: dict[str, str] = {}

    def add_service_error(self, exc: ApplicationError) -> None:
        refusal_record(exc)  # the service's transaction rolled back: audit the refusal now
        form: Any = self
        named = exc.extra.get("fields") or {}
        placed = False
        for key, messages in named.items():
            name = self.field_aliases.get(key, key)
            if name in form.fields:
                form.add_error(name, messages)
                placed = True
        if not placed:
            form.add_error(None, exc.message)


class BankOnboardForm(ServiceErrorsMixin, PortalForm):
    slug = forms.SlugField(
        max_length=50,
        help_text="Short identifier the bank's node uses, e.g. northbank. Letters, digits, "
        "hyphens.",
    )
    name = forms.CharField(max_length=200, help_text="The bank's full name.")
    signing_public_key = forms.CharField(
        max_length=64,
        required=False,
        label="Signing public key (optional)",
        help_text="The base64 Ed25519 public key from `bank-node signing-keygen` (the .pub "
        "file). Leave empty to let the bank register it itself.",
    )


class BankStatusForm(ServiceErrorsMixin, PortalForm):
    # No action is chosen for the operator: the empty first choice must be changed.
    action = forms.ChoiceField(
        choices=[
            ("", "Choose an action…"),
            ("suspend", "Suspend (the node is refused until reactivated)"),
            ("reactivate", "Reactivate"),
            ("revoke", "Revoke (final)"),
        ],
        error_messages={"required": "Choose what to do with this bank."},
    )
    reason = forms.CharField(
        max_length=500,
        help_text="Why: kept in the audit trail.",
        error_messages={"required": "Give a reason: it is kept in the audit trail."},
    )
    confirm_revoke = forms.BooleanField(
        required=False, label="I understand that a revocation cannot be undone"
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("action") == "revoke" and not data.get("confirm_revoke"):
            self.add_error("confirm_revoke", "Tick this box to revoke: it cannot be undone.")
        return data


class CredentialRotateForm(PortalForm):
    immediate = forms.BooleanField(
        required=False,
        label="The current credential may have leaked: refuse it at once",
        help_text="Otherwise it keeps working until the node first uses the new one, or "
        "the grace period ends.",
    )


class SigningKeyForm(ServiceErrorsMixin, PortalForm):
    public_key = forms.CharField(
        max_length=64,
        label="New signing public key",
        help_text="Base64 raw Ed25519 public key (the .pub file `bank-node signing-keygen` "
        "wrote). Updates signed with the old key are refused from now on.",
    )


class RepresentativeForm(ServiceErrorsMixin, PortalForm):
    username = forms.CharField(
        max_length=150,
        help_text="An existing account (create one on the Accounts page). It will see this "
        "bank's page and nothing else.",
    )


class AccountCreateForm(ServiceErrorsMixin, PortalForm):
    username = forms.SlugField(max_length=150, help_text="What the person signs in with.")
    email = forms.EmailField(
        required=False, help_text="Optional: where to reach them (no mail is sent from here)."
    )
    role = forms.ChoiceField(choices=AccountRole.choices, widget=forms.RadioSelect)
    bank = forms.ModelChoiceField(
        queryset=Bank.objects.all(),
        required=False,
        to_field_name="slug",
        empty_label="(for a representative) choose the bank",
        help_text="The one bank a representative sees.",
    )


# Labels and explanations a person understands, for the policy fields the model names tersely.
POLICY_LABELS: dict[str, tuple[str, str]] = {
    "local_epochs": ("Local epochs", "Passes over its own data each bank makes per round."),
    "batch_size": ("Batch size", ""),
    "learning_rate": ("Learning rate", ""),
    "fedprox_mu": ("FedProx μ", "0 is plain FedAvg; larger keeps banks near the global model."),
    "min_banks": (
        "Minimum banks per aggregate",
        f"At least {MIN_BANKS_FLOOR}: {MIN_BANKS_FLOOR_TEXT}.",
    ),
    "max_rounds": ("Maximum rounds", "Training stops after this many published rounds."),
    "max_consecutive_failures": (
        "Stop after failed rounds in a row",
        "No new round opens after this many consecutive failures.",
    ),
    "normalize_features": ("Feature statistics round first", ""),
    "dp_target_epsilon": ("Privacy budget ε (DP-SGD)", ""),
    "dp_delta": ("DP δ", ""),
    "dp_max_grad_norm": ("Gradient clipping norm", ""),
    "dp_noise_multiplier": ("Noise multiplier", ""),
    "secure_aggregation": ("Secure aggregation", "v2 masks each update; v1 is the legacy path."),
    "aggregate_checkers": (
        "Aggregate checkers (v2)",
        "Nodes that recompute the aggregate before decrypting it; 0 = every node.",
    ),
    "max_bank_share": (
        "Largest share of rows per bank",
        "0 < share <= 1, e.g. 0.5: no bank's update weighs more than half the consortium's "
        "rows. Needs the feature statistics round; empty = no cap.",
    ),
    "update_clip_norm": (
        "Update clip norm (L2)",
        "Each bank clips its step to this distance from the round's base and nodes refuse "
        "an aggregate that moved further; empty = off. Measured values: docs/robustness.md.",
    ),
}


class PolicyForm(ServiceErrorsMixin, PortalForm):
    """Every policy field, pre-filled from ``base``: the deadline in minutes, the model spec
    field by field, the CKKS parameters chosen among the key epochs' (``policy_fields``)."""

    field_aliases = {"deadline": "deadline_minutes", "name": "name", "model_spec": "model_hidden"}

    def __init__(
        self,
        *args: Any,
        base: RoundPolicy | None = None,
        epochs: list[KeyEpoch] | None = None,
        **kwargs: Any,
    ) -> None:
        initial = {**_policy_initial(base), **(kwargs.pop("initial", None) or {})}
        super().__init__(*args, initial=initial, **kwargs)
        if base is None:
            self.fields["name"] = forms.SlugField(
                max_length=50, help_text="A new policy's name; its first version is 1."
            )
        spec = base.model_spec if base is not None else default_model_spec()
        if epochs is None:
            epochs = key_epochs_for_policies()
        current = (base.ckks_params, f"as in {base} (no key epoch has them)") if base else None
        for name in POLICY_FIELDS:
            if name in FORM_SKIPPED:
                continue
            if name == "model_spec":
                self.fields.update(model_spec_fields(spec))
            elif name == "ckks_params":
                self.fields[name] = ckks_field(epochs, *(current or (None, "")))
            elif name != "deadline":
                self.fields[name] = _policy_model_field(name)
            if name == "max_rounds":
                self.fields["deadline_minutes"] = forms.IntegerField(
                    min_value=1,
                    label="Deadline (minutes)",
                    help_text="How long a round waits for updates.",
                )
        if base is None or not base.active:
            # A new version of the active policy is active at once (policy_new_version).
            self.fields["activate"] = forms.BooleanField(
                required=False,
                label="Make this version the active policy",
                help_text="The scheduler opens the next round under the active policy.",
            )

    def clean_model_hidden(self) -> list[int] | None:
        return parse_hidden(self.cleaned_data.get("model_hidden") or "")

    def policy_fields(self) -> dict[str, Any]:
        data = {f: self.cleaned_data[f] for f in POLICY_FIELDS if f in self.cleaned_data}
        data["model_spec"] = model_spec_from(self.cleaned_data)
        data["deadline"] = timedelta(minutes=self.cleaned_data["deadline_minutes"])
        return data


# Set through the API or a policy file, not this form (a new version keeps its base's): the
# cross-bank sketch is a JSON spec of dates and noise parameters, off unless a consortium
# has decided to run it (docs/threat-model.md).
FORM_SKIPPED = ("counterparty_sketch",)


def _policy_initial(base: RoundPolicy | None) -> dict[str, Any]:
    """The form's starting values: ``base``'s, or the model's defaults for a new policy."""
    structured = ("deadline", "model_spec", "ckks_params", *FORM_SKIPPED)
    plain = [f for f in POLICY_FIELDS if f not in structured]
    if base is None:
        default = RoundPolicy._meta.get_field("deadline").get_default()
        return {"deadline_minutes": int(default.total_seconds() // 60)}
    initial = {f: getattr(base, f) for f in plain}
    initial["deadline_minutes"] = int(base.deadline.total_seconds() // 60)
    return initial


def _policy_model_field(name: str) -> forms.Field:
    """The model's own form field for ``name``, with the label a person understands."""
    form_field = forms.fields_for_model(RoundPolicy, fields=[name])[name]
    form_field.show_hidden_initial = False
    label, help_text = POLICY_LABELS.get(name, (None, None))
    if label:
        form_field.label = label
    if help_text:
        form_field.help_text = help_text
    return form_field


class PolicyCompareForm(PortalForm):
    """Two versions to compare: from ``a`` to ``b``, any names."""

    def __init__(self, *args: Any, versions: list[RoundPolicy], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, label in (("a", "From"), ("b", "To")):
            self.fields[name] = forms.TypedChoiceField(
                choices=[("", "choose a version")] + [(str(p.pk), str(p)) for p in versions],
                coerce=lambda pk: next(p for p in versions if str(p.pk) == pk),
                label=label,
                error_messages={
                    "invalid_choice": "%(value)s is not a policy version.",
                    "required": "Choose a policy version.",
                },
            )


class AuditFilterForm(PortalForm):
    action = forms.ChoiceField(required=False)
    actor = forms.CharField(required=False, max_length=200, help_text="e.g. bank:alpha")
    object_type = forms.ChoiceField(required=False, label="Object")
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}), help_text="inclusive"
    )

    def __init__(self, *args: Any, actions: list[str], object_types: list[str], **kw: Any):
        super().__init__(*args, **kw)
        action, object_type = self.fields["action"], self.fields["object_type"]
        cast(forms.ChoiceField, action).choices = [("", "any action")] + [(a, a) for a in actions]
        cast(forms.ChoiceField, object_type).choices = [("", "any object")] + [
            (o, o) for o in object_types
        ]

    def filters(self) -> dict[str, Any]:
        """Selector arguments; an invalid form filters nothing rather than failing."""
        data = self.cleaned_data if self.is_valid() else {}
        tz = timezone.get_current_timezone()
        since, until = data.get("since"), data.get("until")
        return {
            "action": data.get("action", ""),
            "actor": data.get("actor", ""),
            "object_type": data.get("object_type", ""),
            "since": datetime.combine(since, time.min, tz) if since else None,
            "until": datetime.combine(until + timedelta(days=1), time.min, tz) if until else None,
        }

"""Policies, key epochs, rounds and what banks submit to them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from consortium.members.models import Bank
from consortium.rounds.feature_set_fields import FeatureSetFields

# Defined in their own modules (this one is at its size limit) and imported here so that
# Django registers them with the app's other models.
from consortium.rounds.secagg_models import MaskKey as MaskKey
from consortium.rounds.secagg_models import ShareReveal as ShareReveal
from consortium.rounds.served_models import ServedModel as ServedModel
from consortium.rounds.server_opt_fields import ServerOptimizerFields
from consortium.rounds.sketch_fields import CounterpartySketchFields
from consortium.rounds.verdict_models import GateVerdict as GateVerdict
from he.codec import TRAILER_SLOTS
from protocol import (
    DEFAULT_GATE_ALERT_RATE,
    DEFAULT_SECURE_AGGREGATION,
    DERIVED_POLICY_FIELDS,
    MIN_BANKS_FLOOR,
    MIN_BANKS_FLOOR_TEXT,
    PolicySnapshot,
    default_ckks_params,
    default_model_spec,
    dp_enabled,
)
from protocol import POLICY_FIELDS as SNAPSHOT_FIELDS

# default_model_spec and default_ckks_params are imported here because the migrations name
# them as ``consortium.rounds.models.default_*``; they are defined in protocol.


def _operator_policy_fields() -> tuple[str, ...]:
    """What an operator chooses: the snapshot's fields, less ``name`` and those the portal
    derives, with the deadline as a duration, plus the scheduler's own knob (which never
    travels to a bank)."""
    chosen: list[str] = []
    for name in SNAPSHOT_FIELDS:
        if name == "name" or name in DERIVED_POLICY_FIELDS:
            continue
        chosen.append("deadline" if name == "deadline_seconds" else name)
        if name == "max_rounds":
            chosen.append("max_consecutive_failures")
    return tuple(chosen)


# The policy fields an operator may set, in the order the portal shows them.
POLICY_FIELDS: tuple[str, ...] = _operator_policy_fields()


class RoundPolicy(ServerOptimizerFields, FeatureSetFields, CounterpartySketchFields):
    """How rounds are run. Versioned: once a round has used a version it is frozen."""

    name = models.SlugField(max_length=50)
    version = models.PositiveIntegerField()
    active = models.BooleanField(
        default=False, help_text="The scheduler opens rounds under the newest active policy."
    )
    model_spec = models.JSONField(default=default_model_spec)
    n_features = models.PositiveIntegerField(help_text="Feature count the model expects.")
    vector_length = models.PositiveIntegerField(
        help_text="Values in an update: model parameters plus the count and tag slots."
    )
    local_epochs = models.PositiveIntegerField(default=2, validators=[MinValueValidator(1)])
    batch_size = models.PositiveIntegerField(default=256, validators=[MinValueValidator(1)])
    learning_rate = models.FloatField(default=1e-3, validators=[MinValueValidator(1e-7)])
    fedprox_mu = models.FloatField(default=0.0, validators=[MinValueValidator(0.0)])
    min_banks = models.PositiveIntegerField(
        default=MIN_BANKS_FLOOR,
        validators=[
            MinValueValidator(
                MIN_BANKS_FLOOR,
                message=f"min_banks must be at least {MIN_BANKS_FLOOR}: {MIN_BANKS_FLOOR_TEXT}",
            )
        ],
    )
    deadline = models.DurationField(default=timedelta(minutes=30))
    max_rounds = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)])
    max_consecutive_failures = models.PositiveIntegerField(
        default=3, help_text="Stop opening rounds after this many failed rounds in a row."
    )
    ckks_params = models.JSONField(default=default_ckks_params)
    # Record-level differential privacy (DP-SGD with Opacus at each bank). No target and no
    # noise multiplier: DP is off. A target with no multiplier: each bank derives the
    # multiplier that spends exactly the target over max_rounds rounds.
    dp_target_epsilon = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.01)],
        help_text="Privacy budget (epsilon) per bank over the whole training; empty = no DP.",
    )
    dp_delta = models.FloatField(
        default=1e-5,
        validators=[MinValueValidator(1e-12), MaxValueValidator(1e-3)],
        help_text="DP delta; must also be below 1/n at every bank.",
    )
    dp_max_grad_norm = models.FloatField(
        default=1.0,
        validators=[MinValueValidator(1e-4)],
        help_text="Per-example gradient clipping norm.",
    )
    dp_noise_multiplier = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0)],
        help_text="Fixed noise multiplier; empty = derived from the target.",
    )
    normalize_features = models.BooleanField(
        default=True,
        help_text="Run a statistics round first: an encrypted sum of feature moments gives "
        "every bank the same consortium-wide normalisation.",
    )
    secure_aggregation = models.CharField(
        max_length=2,
        choices=[
            ("v2", "v2: masked, seeded, packed (no one short of all other banks reads an update)"),
            ("v1", "v1: one shared key (legacy)"),
        ],
        default=DEFAULT_SECURE_AGGREGATION,
        help_text="The aggregation protocol (docs/secure-aggregation.md).",
    )
    aggregate_checkers = models.PositiveIntegerField(
        default=0,
        help_text="v2: how many nodes, chosen by their own coin, recompute the aggregate from "
        "the signed submissions before decrypting it; 0 = every node.",
    )
    # Robustness (docs/robustness.md). Off by default on the model so that a policy made
    # before them keeps its meaning; the policy template and the demo turn them on.
    max_bank_share = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1e-6), MaxValueValidator(1.0)],
        help_text="Largest share of the consortium's rows one bank's update may weigh "
        "(0 < share <= 1); empty = FedAvg by rows, uncapped.",
    )
    update_clip_norm = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1e-9)],
        help_text="Honest nodes clip their weights to this L2 distance from the round's base "
        "and refuse an aggregate that moved further; empty = off.",
    )
    gate_tolerance = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Evaluation gate: a candidate model is adopted only if its consortium AUPRC "
        "is at most this much below the current model's; empty = no gate.",
    )
    gate_alert_rate = models.FloatField(
        default=DEFAULT_GATE_ALERT_RATE,
        validators=[MinValueValidator(1e-6), MaxValueValidator(0.5)],
        help_text="The alert budget (share of rows flagged) at which the gate reports recall.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="policy_name_version_unique"),
            models.CheckConstraint(
                condition=models.Q(min_banks__gte=MIN_BANKS_FLOOR), name="policy_min_banks_3"
            ),
        ]
        verbose_name_plural = "round policies"

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        policy_frozen_check(self)
        super().save(*args, **kwargs)

    @property
    def in_use(self) -> bool:
        return self.pk is not None and self.rounds.exists()

    def as_snapshot(self) -> PolicySnapshot:
        """This version as the declared wire shape (``protocol.PolicySnapshot``)."""
        values = {
            name: getattr(self, name) for name in SNAPSHOT_FIELDS if name != "deadline_seconds"
        }
        return PolicySnapshot.from_dict(
            {**values, "deadline_seconds": int(self.deadline.total_seconds())}
        )

    def snapshot(self) -> dict[str, Any]:
        """The frozen copy a round keeps of the policy it opened under (JSON-ready)."""
        return self.as_snapshot().to_dict()

    @property
    def dp_enabled(self) -> bool:
        return dp_enabled(self.dp_target_epsilon, self.dp_noise_multiplier)

    @property
    def stats_vector_length(self) -> int:
        """A statistics update: ``[sum x_1..x_F, sum x_1^2..x_F^2, n, tag]``."""
        return 2 * self.n_features + TRAILER_SLOTS


class KeyEpoch(models.Model):
    """A consortium CKKS key: the portal keeps only its public context."""

    number = models.PositiveIntegerField(unique=True)
    fingerprint = models.CharField(max_length=64, unique=True)
    ckks_params = models.JSONField()
    public_context = models.BinaryField()
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"epoch {self.number} ({self.fingerprint[:12]})"


class RoundState(models.TextChoices):
    SHARING = "sharing", "Sharing mask keys"
    OPEN = "open", "Open"
    UNMASKING = "unmasking", "Unmasking"
    AGGREGATING = "aggregating", "Aggregating"
    PUBLISHED = "published", "Published"
    FAILED = "failed", "Failed"


# A round in one of these states is "in flight": at most one at a time (the
# one_round_in_flight constraint below lists the same states).
IN_FLIGHT_STATES: tuple[RoundState, ...] = (
    RoundState.SHARING,
    RoundState.OPEN,
    RoundState.UNMASKING,
    RoundState.AGGREGATING,
)


class RoundKind(models.TextChoices):
    TRAINING = "training", "Training"
    STATISTICS = "statistics", "Feature statistics"
    EVALUATION = "evaluation", "Evaluation gate"
    SKETCH = "sketch", "Counterparty sketches"


class Round(models.Model):
    """One federated round: open -> aggregating -> published, or failed."""

    number = models.PositiveIntegerField(unique=True)
    kind = models.CharField(max_length=20, choices=RoundKind.choices, default=RoundKind.TRAINING)
    vector_length = models.PositiveIntegerField(help_text="Values every update must carry.")
    stats_round = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The statistics round whose aggregate normalises this round's features.",
    )
    policy = models.ForeignKey(RoundPolicy, on_delete=models.PROTECT, related_name="rounds")
    policy_snapshot = models.JSONField()
    key_epoch = models.ForeignKey(KeyEpoch, on_delete=models.PROTECT, related_name="rounds")
    base_round = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Whose aggregate this round starts from; empty means the initial weights.",
    )
    # An evaluation round scores this training round's aggregate (the candidate) against
    # its base (the current model); empty for every other kind.
    candidate_round = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="evaluations",
        help_text="The training round an evaluation round gates.",
    )
    state = models.CharField(
        max_length=20, choices=RoundState.choices, default=RoundState.OPEN, db_index=True
    )
    opened_at = models.DateTimeField()
    deadline_at = models.DateTimeField()
    aggregating_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    failure_reason = models.TextField(blank=True)
    aggregate_digest = models.CharField(max_length=64, blank=True)
    aggregate_size = models.PositiveBigIntegerField(null=True, blank=True)
    aggregate_blob = models.CharField(max_length=300, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    # Secure aggregation v2 (empty for v1 rounds): the roster's active members when the
    # round opened, the Shamir threshold, the end of the current phase (sharing or
    # unmasking; uploads use deadline_at), and the survivors/dropped split fixed when
    # uploads closed.
    cohort = models.JSONField(default=list, blank=True)
    threshold = models.PositiveIntegerField(null=True, blank=True)
    phase_deadline_at = models.DateTimeField(null=True, blank=True)
    survivors = models.JSONField(default=list, blank=True)
    dropped = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            # At most one round is in flight; the scheduler relies on it.
            models.UniqueConstraint(
                fields=["state"],
                condition=models.Q(state__in=["sharing", "open", "unmasking", "aggregating"]),
                name="one_round_in_flight",
            )
        ]

    def __str__(self) -> str:
        return f"round {self.number} ({self.state})"

    @property
    def masked(self) -> bool:
        """The round runs secure aggregation v2: it opened with a cohort and a threshold.

        Fixed when the round opened, not read from the snapshot, so an edit of the stored
        snapshot (which nodes refuse anyway) cannot switch a v1 round to v2 midway.
        """
        return self.threshold is not None


class Submission(models.Model):
    """A bank's accepted, encrypted update to a round."""

    round = models.ForeignKey(Round, on_delete=models.PROTECT, related_name="submissions")
    bank = models.ForeignKey(Bank, on_delete=models.PROTECT, related_name="submissions")
    digest = models.CharField(max_length=64)
    signature = models.CharField(max_length=100)
    # The key that verified the signature, kept so it stays checkable after a rotation.
    signing_public_key = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    blob = models.CharField(max_length=300)
    received_at = models.DateTimeField(auto_now_add=True)
    # Reported by the bank with the upload: cumulative epsilon after this round (DP on),
    # and whether another round would still fit in its budget.
    epsilon_spent = models.FloatField(null=True, blank=True)
    budget_left = models.BooleanField(null=True, blank=True)

    class Meta:
        ordering = ["round", "bank"]
        constraints = [
            models.UniqueConstraint(fields=["round", "bank"], name="one_submission_per_bank")
        ]

    def __str__(self) -> str:
        return f"{self.bank} -> round {self.round.number}"


class MetricReport(models.Model):
    """Metrics a bank chose to report after evaluating a published aggregate locally."""

    round = models.ForeignKey(Round, on_delete=models.PROTECT, related_name="metric_reports")
    bank = models.ForeignKey(Bank, on_delete=models.PROTECT, related_name="metric_reports")
    metrics = models.JSONField()
    # The SHA-256 of the model the bank's node produced (models.server_opt.model_digest);
    # every node should report the same one. Empty: not reported (FedAvg nodes send none).
    model_digest = models.CharField(max_length=64, blank=True, default="")
    reported_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["round", "bank"], name="one_metric_report_per_bank")
        ]

    def __str__(self) -> str:
        return f"{self.bank} metrics for round {self.round_id}"


def policy_frozen_check(policy: RoundPolicy) -> None:
    """Raise if ``policy`` has been used by a round (only ``active`` may still change)."""
    if policy.pk is None or not policy.in_use:
        return
    stored = RoundPolicy.objects.get(pk=policy.pk)
    changed = [
        f.name
        for f in RoundPolicy._meta.concrete_fields
        if f.name not in {"active"} and getattr(stored, f.attname) != getattr(policy, f.attname)
    ]
    if changed:
        raise ValidationError(
            f"policy {policy} has been used by a round and cannot be edited "
            f"(changed: {', '.join(changed)}); create a new version instead"
        )

"""Shapes of round data on the wire. Serializers run no queries of their own."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from rest_framework import serializers
from rest_framework.request import Request

from consortium.rounds.gate_selectors import Gate
from consortium.rounds.models import KeyEpoch, Round, RoundPolicy, Submission
from consortium.rounds.uploads import Readable, Upload
from protocol import DERIVED_POLICY_FIELDS, MIN_BANKS_FLOOR, MIN_BANKS_FLOOR_TEXT, PrivacyClaim
from protocol import POLICY_FIELDS as SNAPSHOT_FIELDS


class KeyEpochSerializer(serializers.ModelSerializer):
    class Meta:
        model = KeyEpoch
        fields = ["number", "fingerprint", "ckks_params", "active", "created_at"]


class KeyEpochCreateSerializer(serializers.Serializer):
    public_context_b64 = serializers.CharField(
        help_text="base64 of the public context file that `bank-node keygen` wrote"
    )
    ckks_params = serializers.DictField()


class RoundSerializer(serializers.ModelSerializer):
    policy = serializers.DictField(source="policy_snapshot", read_only=True)
    key_epoch = serializers.CharField(source="key_epoch.fingerprint", read_only=True)
    stats_round = serializers.IntegerField(
        source="stats_round.number", allow_null=True, read_only=True
    )
    base_key_epoch = serializers.CharField(
        source="base_round.key_epoch.fingerprint",
        allow_null=True,
        read_only=True,
        help_text="The key epoch the base aggregate was encrypted under.",
    )
    base_round = serializers.IntegerField(
        source="base_round.number", allow_null=True, read_only=True
    )
    submissions = serializers.SerializerMethodField()
    candidate_round = serializers.IntegerField(
        source="candidate_round.number",
        allow_null=True,
        read_only=True,
        help_text="An evaluation round: the training round it gates.",
    )
    gate_round = serializers.SerializerMethodField(
        help_text="A gated training round: its evaluation round, once opened."
    )
    gate_decision = serializers.SerializerMethodField(
        help_text="adopt or reject, derived from the banks' verified verdicts; null undecided."
    )

    class Meta:
        model = Round
        fields = [
            "number",
            "kind",
            "vector_length",
            "stats_round",
            "state",
            "policy",
            "key_epoch",
            "base_round",
            "base_key_epoch",
            "opened_at",
            "deadline_at",
            "aggregating_at",
            "closed_at",
            "failure_reason",
            "aggregate_digest",
            "aggregate_size",
            "manifest",
            "submissions",
            "candidate_round",
            "gate_round",
            "gate_decision",
        ]

    def _gate(self, obj: Round) -> Gate | None:
        # The view puts the gates of the rounds it shows in the context (one query for
        # all of them); without them a round shows no gate rather than querying here.
        gates = self.context.get("gates") or {}
        gate = gates.get(obj.number)
        return gate if isinstance(gate, Gate) else None

    def get_gate_round(self, obj: Round) -> int | None:
        gate = self._gate(obj)
        return gate.evaluation.number if gate is not None else None

    def get_gate_decision(self, obj: Round) -> str | None:
        gate = self._gate(obj)
        return gate.decision if gate is not None else None

    def get_submissions(self, obj: Round) -> int:
        # Annotated by the view's queryset where it matters; falls back to a count.
        count = getattr(obj, "submission_count", None)
        return int(count) if count is not None else obj.submissions.count()


class PolicySerializer(serializers.ModelSerializer):
    deadline_seconds = serializers.IntegerField(min_value=1, write_only=True, required=False)
    # What banks approve in the roster: the snapshot a round would carry, and its digest
    # (nodes recompute the digest from the snapshot rather than trust this field).
    snapshot = serializers.SerializerMethodField()
    digest = serializers.SerializerMethodField()
    # Declared here so the refusal below, with its reason, is the message people see.
    min_banks = serializers.IntegerField(
        required=False, default=RoundPolicy._meta.get_field("min_banks").get_default()
    )
    max_bank_share = serializers.FloatField(required=False, allow_null=True)
    # Derived from feature_set; accepted only so that a different one is refused (400
    # naming n_features by policy_create), never silently replaced.
    n_features = serializers.IntegerField(required=False, min_value=1)
    update_clip_norm = serializers.FloatField(required=False, allow_null=True)

    class Meta:
        model = RoundPolicy
        fields = [
            "id",
            "name",
            "version",
            "active",
            *(f for f in SNAPSHOT_FIELDS if f not in {"name", "version", "deadline_seconds"}),
            "deadline",
            "deadline_seconds",
            "max_consecutive_failures",
            "created_at",
            "created_by",
            "snapshot",
            "digest",
        ]
        read_only_fields = [
            "id",
            *sorted(DERIVED_POLICY_FIELDS),
            "created_at",
            "created_by",
            "deadline",
        ]

    def get_snapshot(self, obj: RoundPolicy) -> dict[str, Any]:
        return obj.snapshot()

    def get_digest(self, obj: RoundPolicy) -> str:
        return obj.as_snapshot().digest()

    def validate_min_banks(self, value: int) -> int:
        if value < MIN_BANKS_FLOOR:
            raise serializers.ValidationError(
                f"min_banks must be at least {MIN_BANKS_FLOOR}: {MIN_BANKS_FLOOR_TEXT}"
            )
        return value

    def validate_max_bank_share(self, value: float | None) -> float | None:
        if value is not None and not 0.0 < value <= 1.0:
            raise serializers.ValidationError(
                f"max_bank_share must be a share of the consortium's rows in (0, 1], e.g. 0.5 "
                f"(no bank weighs more than half), or null for no cap; got {value:g}"
            )
        return value

    def validate_update_clip_norm(self, value: float | None) -> float | None:
        if value is not None and not (value > 0.0 and math.isfinite(value)):
            raise serializers.ValidationError(
                "update_clip_norm must be a positive L2 distance, e.g. 5.0 (measure your "
                f"honest updates: docs/robustness.md), or null for no clipping; got {value:g}"
            )
        return value

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        values = super().to_internal_value(data)
        if "deadline_seconds" in values:
            values["deadline"] = timedelta(seconds=values.pop("deadline_seconds"))
        return values


class MetricsSerializer(serializers.Serializer):
    metrics = serializers.DictField(child=serializers.FloatField(allow_null=True))
    model_digest = serializers.RegexField(
        r"^[0-9a-f]{64}$",
        required=False,
        default="",
        error_messages={"invalid": "model_digest must be 64 lowercase hex digits (SHA-256)"},
        help_text="SHA-256 of the model the node produced (models.server_opt.model_digest).",
    )

    def validate_metrics(self, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > 50:
            raise serializers.ValidationError("send between 1 and 50 named metrics")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A node that does not share its figures still reports its model's digest.
        if not attrs["metrics"] and not attrs.get("model_digest"):
            raise serializers.ValidationError(
                {"metrics": "send between 1 and 50 named metrics, or a model_digest"}
            )
        return attrs


class UploadHeadersSerializer(serializers.Serializer):
    """The headers of ``PUT /rounds/{n}/update``; the body itself is streamed, never parsed.

    The digest and signature are only normalised here: a missing one is refused by the
    submission service, after the round checks, so that the refusal is audited.
    """

    digest = serializers.CharField(required=False, default="", allow_blank=True)
    signature = serializers.CharField(required=False, default="", allow_blank=True)
    epsilon = serializers.CharField(
        required=False, default=None, allow_blank=True, trim_whitespace=False
    )
    budget_left = serializers.CharField(
        required=False, default=None, allow_blank=True, trim_whitespace=False
    )
    content_length = serializers.CharField(
        required=False, default=None, allow_blank=True, trim_whitespace=False
    )

    HEADERS = {
        "digest": "X-Update-Digest",
        "signature": "X-Update-Signature",
        "epsilon": "X-Privacy-Epsilon",
        "budget_left": "X-Privacy-Budget-Left",
        "content_length": "Content-Length",
    }

    @classmethod
    def from_request(cls, request: Request) -> UploadHeadersSerializer:
        headers = request.headers
        return cls(data={k: headers[h] for k, h in cls.HEADERS.items() if h in headers})

    def validate_digest(self, value: str) -> str:
        return value.lower()

    def validate_epsilon(self, value: str | None) -> float | None:
        if value is None:
            return None
        try:
            epsilon = float(value)
        except ValueError:
            epsilon = -1.0
        if not (0 <= epsilon < float("inf")):
            raise serializers.ValidationError("X-Privacy-Epsilon must be a non-negative number")
        return epsilon

    def validate_budget_left(self, value: str | None) -> bool | None:
        if value is None:
            return None
        if value.lower() not in {"true", "false"}:
            raise serializers.ValidationError("X-Privacy-Budget-Left must be true or false")
        return value.lower() == "true"

    def validate_content_length(self, value: str | None) -> int | None:
        # Anything but a plain number is left to the body's own length, as before.
        return int(value) if value and value.isdigit() else None

    def upload(self, body: Readable) -> Upload:
        data = self.validated_data
        return Upload(
            digest=data["digest"],
            signature=data["signature"],
            body=body,
            content_length=data["content_length"],
            privacy=PrivacyClaim(epsilon=data["epsilon"], budget_left=data["budget_left"]),
        )


class SubmissionAcceptedSerializer(serializers.ModelSerializer):
    """The answer to an accepted upload (the same for an idempotent retry)."""

    round = serializers.IntegerField(source="round.number", read_only=True)
    bank = serializers.CharField(source="bank.slug", read_only=True)

    class Meta:
        model = Submission
        fields = ["round", "bank", "digest", "size_bytes", "received_at"]

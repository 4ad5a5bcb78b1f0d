"""Shapes of audit data on the wire. Serializers run no queries of their own."""

from __future__ import annotations

from rest_framework import serializers

from audit.models import AuditEvent, Checkpoint


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "seq",
            "created_at",
            "actor",
            "action",
            "object_type",
            "object_id",
            "data",
            "prev_hash",
            "hash",
        ]


class CheckpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = Checkpoint
        fields = ["seq", "head_hash", "signed_at", "reason", "public_key", "signature"]


class EventFilterSerializer(serializers.Serializer):
    action = serializers.CharField(required=False)
    actor = serializers.CharField(required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    round = serializers.IntegerField(required=False, min_value=1)


class ReportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(
        choices=["json", "csv", "pdf", "zip"],
        default="json",
        help_text="zip: the evidence pack (all three and a signed manifest)",
    )
    at = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="the snapshot: the event number the report runs to (default: the head "
        "now); exports of the same snapshot give the same report",
    )
    rounds = serializers.CharField(required=False, help_text="round numbers, e.g. 1,2")
    since = serializers.CharField(required=False, help_text="date or ISO datetime (UTC)")
    until = serializers.CharField(
        required=False, help_text="date (inclusive) or ISO datetime (exclusive), UTC"
    )


class ChainCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    events = serializers.IntegerField()
    first_bad_seq = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField()
    problem = serializers.CharField()
    head_seq = serializers.IntegerField()
    head_hash = serializers.CharField()
    checkpoints = serializers.IntegerField()


class PublicKeySerializer(serializers.Serializer):
    algorithm = serializers.CharField()
    public_key = serializers.CharField(help_text="base64 of the raw 32-byte Ed25519 key")
    pem = serializers.CharField()

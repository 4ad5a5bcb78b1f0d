"""Shapes of roster data on the wire. No queries here: signatures arrive prefetched."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from consortium.governance.models import Objection, RosterVersion
from consortium.members.models import Bank
from governance import Pending


class RosterQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(
        required=False, min_value=-1, help_text="Only versions with a higher number."
    )


class SignatureSerializer(serializers.Serializer):
    signature = serializers.CharField(
        max_length=100, help_text="base64 Ed25519 signature of the version (bank-node approve)"
    )


class RosterVersionSerializer(serializers.ModelSerializer):
    version = serializers.SerializerMethodField(
        help_text="The version as signed: body plus signatures, for nodes to verify."
    )
    signers = serializers.SerializerMethodField()

    class Meta:
        model = RosterVersion
        fields = [
            "number",
            "version_hash",
            "previous_hash",
            "kind",
            "summary",
            "status",
            "proposed_by",
            "proposed_at",
            "in_force_at",
            "signers",
            "version",
        ]

    def _signatures(self, row: RosterVersion) -> dict[str, str]:
        return {s.bank_id: s.signature for s in row.signatures.all()}

    def get_version(self, row: RosterVersion) -> dict[str, Any]:
        return {**row.body, "signatures": dict(sorted(self._signatures(row).items()))}

    def get_signers(self, row: RosterVersion) -> list[str]:
        return sorted(self._signatures(row))


def pending_payload(row: RosterVersion, pending: Pending | str) -> dict[str, Any]:
    """A pending version with who has signed, who is missing, and what is still needed."""
    data: dict[str, Any] = dict(RosterVersionSerializer(row).data)
    if isinstance(pending, str):
        data["approvals"] = {"can_pass": False, "reason": pending}
        return data
    data["approvals"] = {
        "can_pass": True,
        "needed": pending.needed,
        "signed": list(pending.signed),
        "missing": list(pending.missing),
        "missing_count": pending.missing_count,
        "ignored": pending.ignored,
        "proof_of": pending.proof_of,
        "proof_ok": pending.proof_ok,
        "complete": pending.complete,
        "shortfall": pending.shortfall(),
    }
    return data


class ObjectionSerializer(serializers.ModelSerializer):
    bank: serializers.SlugRelatedField[Bank] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )

    class Meta:
        model = Objection
        fields = [
            "id",
            "bank",
            "round_number",
            "reason_code",
            "message",
            "body",
            "signature",
            "received_at",
        ]


class ObjectionCreateSerializer(serializers.Serializer):
    objection = serializers.JSONField(help_text="The objection fields exactly as signed.")
    signature = serializers.CharField(max_length=100)


class ProposalSerializer(serializers.Serializer):
    genesis = serializers.JSONField(required=False, help_text="A drafted version 0.")
    change = serializers.JSONField(required=False, help_text='A change, e.g. {"kind": ...}.')


class DisputeSerializer(serializers.Serializer):
    """A round's dispute as ``governance.Dispute`` derives it from the signatures."""

    round = serializers.IntegerField(source="round_number")
    threshold = serializers.IntegerField(help_text="Banks needed to dispute, and to clear.")
    objectors = serializers.ListField(child=serializers.CharField())
    clearers = serializers.ListField(child=serializers.CharField())
    disputed = serializers.BooleanField()
    cleared = serializers.BooleanField()

"""Shapes of the evaluation gate on the wire: a verdict as posted, and a round's verdicts."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from consortium.rounds.gate_selectors import Gate
from consortium.rounds.models import GateVerdict
from governance.verdict_check import GateTally


class VerdictPostSerializer(serializers.Serializer):
    """``POST /rounds/{n}/verdicts``: ``GateVerdict.to_dict()`` and its base64 signature."""

    verdict = serializers.JSONField(help_text="The verdict fields exactly as signed.")
    signature = serializers.CharField(
        max_length=100, help_text="base64 Ed25519 signature under the bank's roster key"
    )


class VerdictSerializer(serializers.ModelSerializer):
    """A stored verdict; ``counted`` and ``ignored`` come from the tally in the context."""

    bank = serializers.CharField(source="bank.slug", read_only=True)
    round = serializers.IntegerField(source="round.number", read_only=True)
    counted = serializers.SerializerMethodField()
    ignored = serializers.SerializerMethodField()

    class Meta:
        model = GateVerdict
        fields = ["round", "bank", "verdict", "signature", "received_at", "counted", "ignored"]

    def _tally(self) -> GateTally | None:
        tally = self.context.get("tally")
        return tally if isinstance(tally, GateTally) else None

    def get_counted(self, row: GateVerdict) -> bool:
        tally = self._tally()
        return tally is not None and any(v.bank_id == row.bank.slug for v in tally.counted)

    def get_ignored(self, row: GateVerdict) -> str | None:
        """Why the verdict does not count (None when it does, or before publication)."""
        tally = self._tally()
        return tally.ignored.get(row.bank.slug) if tally is not None else None


def verdicts_payload(
    number: int, candidate: int | None, tally: GateTally | None, rows: list[GateVerdict]
) -> dict[str, Any]:
    """``GET /rounds/{n}/verdicts``: every stored verdict and the decision they give."""
    return {
        "round": number,
        "candidate_round": candidate,
        "threshold": tally.threshold if tally is not None else None,
        "decision": tally.decision if tally is not None else None,
        "verdicts": VerdictSerializer(rows, many=True, context={"tally": tally}).data,
    }


def gate_fields(gate: Gate | None) -> dict[str, Any]:
    """``gate_round`` and ``gate_decision`` of a training round (None until it has a gate)."""
    if gate is None:
        return {"gate_round": None, "gate_decision": None}
    return {"gate_round": gate.evaluation.number, "gate_decision": gate.decision}


class VerdictsResponseSerializer(serializers.Serializer):
    """For the schema only: what ``verdicts_payload`` returns."""

    round = serializers.IntegerField()
    candidate_round = serializers.IntegerField(allow_null=True)
    threshold = serializers.IntegerField(allow_null=True)
    decision = serializers.ChoiceField(choices=["adopt", "reject"], allow_null=True)
    verdicts = VerdictSerializer(many=True)

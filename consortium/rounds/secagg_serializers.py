"""OpenAPI shapes of the secure-aggregation v2 messages (``protocol/secagg.py``).

Bodies are parsed with the protocol's own strict ``from_dict`` (what is stored is exactly
what was signed: no trimming, no coercion); these serializers document the same shapes
for the schema, and turn the stored rows into the receipts the views answer with.
"""

from __future__ import annotations

from rest_framework import serializers

from consortium.rounds.models import MaskKey, ShareReveal


class _Base64Map(serializers.DictField):
    child = serializers.CharField(help_text="base64")


class MaskKeysPostSerializer(serializers.Serializer):
    mask_public_key = serializers.CharField(help_text="base64 of a fresh 32-byte X25519 key")
    seed_commitment = serializers.CharField(help_text="64 hex: he.recovery.seed_commitment")
    signature = serializers.CharField(
        help_text="base64 Ed25519 signature, roster key, over protocol.mask_keys_message"
    )
    shares = _Base64Map(help_text="other cohort bank -> base64 share box sealed to it")


class AdvertisedKeySerializer(serializers.Serializer):
    bank = serializers.CharField()
    mask_public_key = serializers.CharField()
    seed_commitment = serializers.CharField()
    signature = serializers.CharField()


class CohortKeysSerializer(serializers.Serializer):
    round = serializers.IntegerField()
    threshold = serializers.IntegerField()
    cohort = serializers.ListField(child=serializers.CharField())
    keys = AdvertisedKeySerializer(many=True)
    shares_for_you = _Base64Map(help_text="poster -> the box it sealed to the caller")
    final = serializers.BooleanField(help_text="true once sharing closed: keys is then U1")


class UnmaskRequestSerializer(serializers.Serializer):
    round = serializers.IntegerField()
    threshold = serializers.IntegerField()
    survivors = serializers.ListField(child=serializers.CharField())
    dropped = serializers.ListField(child=serializers.CharField())


class RevealSerializer(serializers.Serializer):
    bank = serializers.CharField()
    survivors = serializers.ListField(child=serializers.CharField())
    dropped = serializers.ListField(child=serializers.CharField())
    key_shares = _Base64Map(help_text="dropped bank -> base64 share of its round mask key")
    seed_shares = _Base64Map(help_text="survivor -> base64 share of its self-mask seed")
    signature = serializers.CharField(help_text="base64 Ed25519 over protocol.Reveal.message")


class MaskKeyReceiptSerializer(serializers.ModelSerializer):
    round = serializers.IntegerField(source="round.number", read_only=True)
    bank = serializers.CharField(source="bank.slug", read_only=True)
    recipients = serializers.SerializerMethodField()

    class Meta:
        model = MaskKey
        fields = [
            "round",
            "bank",
            "mask_public_key",
            "seed_commitment",
            "signature",
            "recipients",
            "received_at",
        ]

    def get_recipients(self, row: MaskKey) -> list[str]:
        return sorted(row.shares)


class RevealReceiptSerializer(serializers.ModelSerializer):
    round = serializers.IntegerField(source="round.number", read_only=True)
    bank = serializers.CharField(source="bank.slug", read_only=True)

    class Meta:
        model = ShareReveal
        fields = ["round", "bank", "received_at"]

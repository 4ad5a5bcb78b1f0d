"""Shapes of member-bank data on the wire."""

from rest_framework import serializers

from consortium.members.models import Bank


class BankSerializer(serializers.ModelSerializer):
    class Meta:
        model = Bank
        fields = [
            "slug",
            "name",
            "status",
            "signing_public_key",
            "signing_key_registered_at",
            "created_at",
            "status_changed_at",
        ]


class BankCreateSerializer(serializers.Serializer):
    slug = serializers.SlugField(max_length=50)
    name = serializers.CharField(max_length=200, required=False, default="")
    signing_public_key = serializers.CharField(max_length=64, required=False, default="")


class SigningKeySerializer(serializers.Serializer):
    public_key = serializers.CharField(max_length=64, help_text="base64 raw Ed25519 public key")


class StatusChangeSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, default="")

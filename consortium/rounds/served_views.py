"""REST view of the opt-in report of which model version a bank's node serves."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consortium.api.auth import IsBank, request_bank
from consortium.api.errors import NotFound
from consortium.rounds import selectors
from consortium.rounds.services.served_models import served_model_report


class _VersionField(serializers.RegexField):
    """A version name sent as a JSON string: a number is refused, not turned into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError('a version name must be a string, e.g. "round-7"')
        return str(super().to_internal_value(data))


class ServedModelSerializer(serializers.Serializer):
    """``{"version": "round-7"}``: a name of the node's registry, not free text."""

    version = _VersionField(
        r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        error_messages={
            "invalid": "a version name: letters, digits, '.', '_' or '-', at most 64 (round-7)"
        },
    )


class ServedModelResponseSerializer(serializers.Serializer):
    round = serializers.IntegerField()
    version = serializers.CharField()
    reported_at = serializers.DateTimeField()


class ServedModelView(APIView):
    """A bank's node says it serves round ``number``'s model as ``version`` (opt-in)."""

    permission_classes = [IsBank]

    @extend_schema(request=ServedModelSerializer, responses=ServedModelResponseSerializer)
    def put(self, request: Request, number: int) -> Response:
        serializer = ServedModelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        rnd = selectors.round_get(number)
        if rnd is None:
            raise NotFound(f"round {number} does not exist")
        served = served_model_report(
            rnd=rnd, bank=request_bank(request), version=serializer.validated_data["version"]
        )
        body = {"round": number, "version": served.version, "reported_at": served.reported_at}
        return Response(ServedModelResponseSerializer(body).data)

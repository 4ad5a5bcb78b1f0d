"""REST views for member banks."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consortium.api.auth import IsBank, IsOperator, actor_of, request_bank
from consortium.api.errors import NotFound
from consortium.api.idempotency import idempotent
from consortium.members import services
from consortium.members.models import Bank, BankStatus
from consortium.members.selectors import bank_get
from consortium.members.serializers import (
    BankCreateSerializer,
    BankSerializer,
    SigningKeySerializer,
    StatusChangeSerializer,
)


class BankMeView(APIView):
    """The calling bank's own record."""

    permission_classes = [IsBank]

    @extend_schema(responses=BankSerializer)
    def get(self, request: Request) -> Response:
        return Response(BankSerializer(request_bank(request)).data)


class BankSigningKeyView(APIView):
    """A bank registers its Ed25519 public key (first registration only)."""

    permission_classes = [IsBank]

    @extend_schema(request=SigningKeySerializer, responses=BankSerializer)
    def put(self, request: Request) -> Response:
        serializer = SigningKeySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        bank = services.bank_register_signing_key(
            bank=request_bank(request),
            public_key_b64=serializer.validated_data["public_key"],
            actor=actor_of(request),
        )
        return Response(BankSerializer(bank).data)


class BankListCreateView(generics.ListAPIView):
    """Operators list and onboard banks. The credential appears once, in the 201 answer."""

    serializer_class = BankSerializer
    queryset = Bank.objects.all()
    permission_classes = [IsOperator]

    @extend_schema(request=BankCreateSerializer, responses={201: dict})
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = BankCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        bank, credential = services.bank_create(
            actor=actor_of(request), **serializer.validated_data
        )
        data: dict[str, Any] = dict(BankSerializer(bank).data)
        data["credential"] = credential
        return Response(data, status=status.HTTP_201_CREATED)


def _bank_or_404(slug: str) -> Bank:
    bank = bank_get(slug)
    if bank is None:
        raise NotFound(f"bank {slug!r} does not exist")
    return bank


class BankStatusView(APIView):
    """Operators suspend, reactivate or revoke a bank."""

    permission_classes = [IsOperator]
    action_to_status = {
        "suspend": BankStatus.SUSPENDED,
        "reactivate": BankStatus.ACTIVE,
        "revoke": BankStatus.REVOKED,
    }

    @extend_schema(request=StatusChangeSerializer, responses=BankSerializer)
    @idempotent
    def post(self, request: Request, slug: str, action: str) -> Response:
        if action not in self.action_to_status:
            raise NotFound(f"unknown action {action!r}; use suspend, reactivate or revoke")
        serializer = StatusChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        bank = services.bank_set_status(
            bank=_bank_or_404(slug),
            status=self.action_to_status[action],
            actor=actor_of(request),
            reason=serializer.validated_data["reason"],
        )
        return Response(BankSerializer(bank).data)


class BankSigningKeyRotateView(APIView):
    """Operators replace a bank's signing key (old signatures stay checkable: each
    submission keeps the key that verified it)."""

    permission_classes = [IsOperator]

    @extend_schema(request=SigningKeySerializer, responses=BankSerializer)
    def put(self, request: Request, slug: str) -> Response:
        serializer = SigningKeySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        bank = services.bank_register_signing_key(
            bank=_bank_or_404(slug),
            public_key_b64=serializer.validated_data["public_key"],
            actor=actor_of(request),
        )
        return Response(BankSerializer(bank).data)


class BankRotateCredentialView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(request=None, responses=dict)
    @idempotent
    def post(self, request: Request, slug: str) -> Response:
        bank = _bank_or_404(slug)
        credential = services.bank_rotate_credential(bank=bank, actor=actor_of(request))
        bank.refresh_from_db(fields=["previous_credential_expires_at"])
        until = bank.previous_credential_expires_at
        # The old credential stays valid until the node uses the new one, or until then.
        return Response(
            {
                "slug": slug,
                "credential": credential,
                "previous_valid_until": until.isoformat() if until else None,
            }
        )

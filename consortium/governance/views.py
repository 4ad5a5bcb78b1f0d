"""REST views of the roster: thin wrappers around selectors and services.

Bodies are parsed with the governance library's strict JSON reader (duplicate keys,
NaN and deep nesting refused with a 400), so what is stored is exactly what was signed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from django.http.request import RawPostDataException
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consortium.api.auth import BankPrincipal, IsBank, IsMemberOrStaff, IsOperator, actor_of
from consortium.api.errors import ApplicationError, NotFound
from consortium.api.idempotency import idempotent
from consortium.governance import selectors, services
from consortium.governance.models import Objection
from consortium.governance.serializers import (
    DisputeSerializer,
    ObjectionCreateSerializer,
    ObjectionSerializer,
    ProposalSerializer,
    RosterQuerySerializer,
    RosterVersionSerializer,
    SignatureSerializer,
    pending_payload,
)
from consortium.members.models import Bank
from governance import RosterError
from governance.encoding import strict_json_loads

MAX_BODY_BYTES = 1024 * 1024


def _strict_body(request: Request, fields: set[str]) -> dict[str, Any]:
    """The JSON body as an object holding only ``fields``; anything else is a 400."""
    try:
        raw = request._request.body
    except RawPostDataException:
        raise ApplicationError("send the body as application/json") from None
    if len(raw) > MAX_BODY_BYTES:
        raise ApplicationError(f"request body larger than {MAX_BODY_BYTES} bytes")
    try:
        data = strict_json_loads(raw or b"null")
    except RosterError as exc:
        raise ApplicationError(f"request body: {exc}") from None
    if not isinstance(data, dict) or not set(data) <= fields:
        raise ApplicationError(f"send a JSON object with field(s) {', '.join(sorted(fields))}")
    return data


def _bank_of(request: Request) -> Bank:
    """The calling bank; the views using it admit only bank credentials (IsBank)."""
    principal = request.user
    assert isinstance(principal, BankPrincipal)
    bank: Bank = principal.bank
    return bank


class RosterView(APIView):
    """The roster chain in force (with signatures) and the pending version, if any."""

    permission_classes = [IsMemberOrStaff]

    @extend_schema(parameters=[RosterQuerySerializer], responses={200: dict})
    def get(self, request: Request) -> Response:
        query = RosterQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        state = selectors.roster_state()
        versions = selectors.roster_versions(after=query.validated_data.get("after"))
        pending = [
            pending_payload(row, selectors.version_pending(row, state))
            for row in selectors.roster_pending()
        ]
        return Response(
            {
                "consortium_id": state.consortium_id if state else None,
                "head": {"number": state.version, "hash": state.head_hash} if state else None,
                "versions": RosterVersionSerializer(versions, many=True).data,
                "pending": pending,
            }
        )


class RosterProposalView(APIView):
    """Operators propose a genesis or a change; the banks then sign it."""

    permission_classes = [IsOperator]

    @extend_schema(request=ProposalSerializer, responses={201: RosterVersionSerializer})
    @idempotent
    def post(self, request: Request) -> Response:
        body = _strict_body(request, {"genesis", "change"})
        if len(body) != 1:
            raise ApplicationError('send exactly one of {"genesis": {...}} or {"change": {...}}')
        if "genesis" in body:
            row = services.roster_genesis_propose(
                version_json=body["genesis"], actor=actor_of(request)
            )
        else:
            row = services.roster_change_propose(change=body["change"], actor=actor_of(request))
        fresh = selectors.roster_version_get(row.number)
        return Response(RosterVersionSerializer(fresh).data, status=status.HTTP_201_CREATED)


class RosterSignatureView(APIView):
    """A bank adds its signature to a pending version; the bank is its credential's."""

    permission_classes = [IsBank]

    @extend_schema(request=SignatureSerializer, responses=RosterVersionSerializer)
    @idempotent
    def post(self, request: Request, number: int) -> Response:
        serializer = SignatureSerializer(data=_strict_body(request, {"signature"}))
        serializer.is_valid(raise_exception=True)
        services.roster_version_sign(
            number=number,
            bank_slug=_bank_of(request).slug,
            signature=serializer.validated_data["signature"],
        )
        return Response(RosterVersionSerializer(selectors.roster_version_get(number)).data)


class RosterWithdrawView(APIView):
    """Operators withdraw a pending version."""

    permission_classes = [IsOperator]

    @extend_schema(request=None, responses=RosterVersionSerializer)
    @idempotent
    def post(self, request: Request, number: int) -> Response:
        row = services.roster_version_withdraw(number=number, actor=actor_of(request))
        return Response(RosterVersionSerializer(row).data)


class ObjectionListCreateView(generics.ListAPIView):
    """Every objection, newest first, for everyone; banks file their own."""

    serializer_class = ObjectionSerializer
    permission_classes = [IsMemberOrStaff]

    def get_queryset(self) -> QuerySet[Objection]:
        return selectors.objection_list()

    def get_permissions(self) -> Sequence[Any]:
        return [IsBank()] if self.request.method == "POST" else super().get_permissions()

    @extend_schema(request=ObjectionCreateSerializer, responses={201: ObjectionSerializer})
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = ObjectionCreateSerializer(
            data=_strict_body(request, {"objection", "signature"})
        )
        serializer.is_valid(raise_exception=True)
        row = services.objection_record(
            bank=_bank_of(request),
            objection_json=serializer.validated_data["objection"],
            signature=serializer.validated_data["signature"],
        )
        return Response(ObjectionSerializer(row).data, status=status.HTTP_201_CREATED)


class DisputeListView(APIView):
    """Every round enough banks objected to, disputed or cleared, newest first."""

    permission_classes = [IsMemberOrStaff]

    @extend_schema(responses=DisputeSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(DisputeSerializer(selectors.dispute_list(), many=True).data)


class DisputeDetailView(APIView):
    """One round's dispute: who objected, who signed its clearance."""

    permission_classes = [IsMemberOrStaff]

    @extend_schema(responses=DisputeSerializer)
    def get(self, request: Request, number: int) -> Response:
        dispute = selectors.dispute_get(number)
        if dispute is None:
            raise NotFound(f"round {number} is not disputed (too few banks objected to it)")
        return Response(DisputeSerializer(dispute).data)


class DisputeClearanceView(APIView):
    """A bank signs the clearance of a disputed round; the bank is its credential's."""

    permission_classes = [IsBank]

    @extend_schema(request=SignatureSerializer, responses=DisputeSerializer)
    @idempotent
    def post(self, request: Request, number: int) -> Response:
        serializer = SignatureSerializer(data=_strict_body(request, {"signature"}))
        serializer.is_valid(raise_exception=True)
        dispute = services.dispute_clearance_sign(
            number=number,
            bank_slug=_bank_of(request).slug,
            signature=serializer.validated_data["signature"],
        )
        return Response(DisputeSerializer(dispute).data)

"""REST views of the audit trail: read and export for operators and auditors, never banks."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from django.db.models import QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import selectors
from audit.portal_key import portal_signing_key
from audit.report import SelectionError
from consortium.api.auth import IsOperatorOrAuditor, actor_of
from consortium.api.errors import ApplicationError
from consortium.audit_api.selectors import selection_parse
from consortium.audit_api.serializers import (
    AuditEventSerializer,
    ChainCheckSerializer,
    CheckpointSerializer,
    EventFilterSerializer,
    PublicKeySerializer,
    ReportQuerySerializer,
)
from consortium.audit_api.services import audit_report_export
from he.signing import public_key_b64


class AuditEventListView(generics.ListAPIView):
    """Audit events, oldest first; filter by action, actor, since/until (ISO), round."""

    serializer_class = AuditEventSerializer
    permission_classes = [IsOperatorOrAuditor]

    @extend_schema(parameters=[EventFilterSerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Any]:
        filters = EventFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        given = filters.validated_data
        return selectors.audit_event_list(
            action=given.get("action"),
            actor=given.get("actor"),
            since=given.get("since"),
            until=given.get("until"),
            round_number=given.get("round"),
        )


class AuditVerifyView(APIView):
    """Walk the whole chain now; ``first_bad_seq`` names the first event that fails."""

    permission_classes = [IsOperatorOrAuditor]

    @extend_schema(responses=ChainCheckSerializer)
    def get(self, request: Request) -> Response:
        return Response(selectors.audit_chain_verify().as_dict())


class CheckpointListView(generics.ListAPIView):
    """Signed checkpoints of the chain head, oldest first."""

    serializer_class = CheckpointSerializer
    permission_classes = [IsOperatorOrAuditor]

    def get_queryset(self) -> QuerySet[Any]:
        return selectors.audit_checkpoint_list()


class AuditReportView(APIView):
    """Export one snapshot of the trail as JSON (signed), CSV, PDF or the evidence pack."""

    permission_classes = [IsOperatorOrAuditor]
    renderer_classes = [JSONRenderer]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # Here ``?format=`` names the report's file format, not a DRF renderer: answers
        # other than the report itself (errors) are always JSON.
        return JSONRenderer(), JSONRenderer.media_type

    @extend_schema(
        parameters=[ReportQuerySerializer],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
    )
    def get(self, request: Request) -> HttpResponse:
        query = ReportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        given = query.validated_data
        try:
            selection = selection_parse(
                rounds=given.get("rounds"), since=given.get("since"), until=given.get("until")
            )
            export = audit_report_export(
                selection=selection,
                fmt=given["format"],
                actor=actor_of(request),
                at=given.get("at"),
            )
        except SelectionError as exc:
            raise ApplicationError(str(exc)) from exc
        response = HttpResponse(export.content, content_type=export.content_type)
        response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
        response["X-Report-SHA256"] = export.report["signature"]["body_sha256"]
        response["X-Snapshot-Seq"] = str(export.report["signed_head"]["seq"])
        response["X-Export-SHA256"] = export.digest
        return response


class PortalPublicKeyView(APIView):
    """The portal's Ed25519 public key, which verifies checkpoints and reports. Public."""

    permission_classes: list[Any] = []
    authentication_classes: list[Any] = []

    @extend_schema(responses=PublicKeySerializer)
    def get(self, request: Request) -> Response:
        key = portal_signing_key()
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return Response(
            {"algorithm": "Ed25519", "public_key": public_key_b64(key), "pem": pem.decode()}
        )

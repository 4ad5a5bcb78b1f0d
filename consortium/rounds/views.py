"""REST views for rounds: thin wrappers around selectors and services."""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from django.conf import settings
from django.db import close_old_connections
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consortium.api.auth import (
    IsBank,
    IsMemberOrStaff,
    IsOperator,
    actor_of,
    caller_bank,
    request_bank,
)
from consortium.api.errors import ApplicationError, NotFound
from consortium.api.idempotency import idempotent
from consortium.api.throttles import BankUploadThrottle
from consortium.rounds import gate_selectors, selectors, services
from consortium.rounds.models import Round, RoundKind, RoundState
from consortium.rounds.serializers import (
    KeyEpochCreateSerializer,
    KeyEpochSerializer,
    MetricsSerializer,
    PolicySerializer,
    RoundSerializer,
    SubmissionAcceptedSerializer,
    UploadHeadersSerializer,
)
from consortium.rounds.status_cache import StatusCache
from protocol import MetricsReceipt

# Admission control for uploads in this worker process (settings.MAX_CONCURRENT_UPLOADS).
_upload_slots = threading.BoundedSemaphore(settings.MAX_CONCURRENT_UPLOADS)


def _round_or_404(number: int) -> Round:
    rnd = selectors.round_get(number)
    if rnd is None:
        raise NotFound(f"round {number} does not exist")
    return rnd


class RoundListView(generics.ListAPIView):
    """Every round, newest first."""

    serializer_class = RoundSerializer
    permission_classes = [IsMemberOrStaff]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.round_list_with_counts()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.get_queryset()
        page = self.paginate_queryset(queryset)
        rows = list(page if page is not None else queryset)
        context = {**self.get_serializer_context(), "gates": _gates(rows)}
        data = RoundSerializer(rows, many=True, context=context).data
        return self.get_paginated_response(data) if page is not None else Response(data)


def _gates(rounds: list[Round]) -> dict[int, gate_selectors.Gate]:
    """The gates of the training rounds among ``rounds``, for RoundSerializer's context."""
    return gate_selectors.gates_for(r.number for r in rounds if r.kind == RoundKind.TRAINING)


class RoundCurrentView(APIView):
    """The round in flight (open or aggregating); 204 when there is none."""

    permission_classes = [IsMemberOrStaff]

    @extend_schema(responses={200: RoundSerializer, 204: None})
    def get(self, request: Request) -> Response:
        data = _current_round_payload()
        if data is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(data)


# Every bank polls this and every bank gets the same answer, so a worker keeps it for
# CONSORTIUM_STATUS_CACHE_SECONDS (default 1 s) and refreshes it off the request path
# (status_cache.py): at hundreds of polls a second the database sees about one query per
# worker per second instead of one per poll. A poller may see a state change up to twice
# that long after it happened; uploads and transitions never use it.
def _round_payload() -> dict[str, Any] | None:
    rnd = selectors.round_in_flight()
    # No gate lookup: a round in flight is never a gated candidate with a verdict yet.
    return None if rnd is None else dict(RoundSerializer(rnd).data)


def _round_payload_in_background() -> dict[str, Any] | None:
    # The refresh thread is no request: Django's request signals do not manage its
    # connection, so it does as they do (drop a broken or expired one) around each use.
    close_old_connections()
    try:
        return _round_payload()
    finally:
        close_old_connections()


_current = StatusCache(_round_payload, background=_round_payload_in_background)


def _current_round_payload() -> dict[str, Any] | None:
    data: dict[str, Any] | None = _current.get(settings.STATUS_CACHE_SECONDS)
    return data


class RoundDetailView(APIView):
    """One round; a bank (or its representative) sees its own submission only."""

    permission_classes = [IsMemberOrStaff]

    @extend_schema(responses=RoundSerializer)
    def get(self, request: Request, number: int) -> Response:
        rnd = _round_or_404(number)
        data: dict[str, Any] = dict(RoundSerializer(rnd, context={"gates": _gates([rnd])}).data)
        # A bank sees its own submission and its own privacy spend, nobody else's.
        bank = caller_bank(request)
        submissions = selectors.submission_list_for_round(rnd, bank=bank)
        if bank is not None:
            data["submitted_by_you"] = next((s.digest for s in submissions), None)
        data["privacy"] = [
            {"bank": s.bank.slug, "epsilon_spent": s.epsilon_spent, "budget_left": s.budget_left}
            for s in submissions
            if s.epsilon_spent is not None
        ]
        data["disputed"] = selectors.round_is_disputed(rnd)
        return Response(data)


class RoundAggregateView(APIView):
    """Stream a published round's encrypted aggregate (never an individual update)."""

    permission_classes = [IsMemberOrStaff]

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, number: int) -> FileResponse:
        rnd = _round_or_404(number)
        if rnd.state != RoundState.PUBLISHED:
            raise ApplicationError(
                f"round {number} is {rnd.state}; it has no aggregate", status_code=409
            )
        response = FileResponse(
            services.blob_open(rnd.aggregate_blob), content_type="application/octet-stream"
        )
        response["X-Aggregate-Digest"] = rnd.aggregate_digest
        response["Content-Length"] = str(rnd.aggregate_size)
        return response


class RoundUpdateView(APIView):
    """Upload this bank's encrypted update as the raw request body (streamed to disk)."""

    permission_classes = [IsBank]
    parser_classes: list[Any] = []
    throttle_classes = [BankUploadThrottle]

    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        parameters=[
            OpenApiParameter(
                "X-Update-Digest",
                str,
                OpenApiParameter.HEADER,
                required=True,
                description="hex SHA-256 of the body",
            ),
            OpenApiParameter(
                "X-Update-Signature",
                str,
                OpenApiParameter.HEADER,
                required=True,
                description="base64 Ed25519 signature of "
                "'consortium-update-v1\\n{round}\\n{bank}\\n{digest}'",
            ),
            OpenApiParameter(
                "X-Privacy-Epsilon",
                float,
                OpenApiParameter.HEADER,
                required=False,
                description="cumulative DP epsilon after this round (required under a DP policy)",
            ),
            OpenApiParameter(
                "X-Privacy-Budget-Left",
                str,
                OpenApiParameter.HEADER,
                required=False,
                enum=["true", "false"],
                description="whether one more round would still fit in this bank's budget",
            ),
        ],
        responses={200: SubmissionAcceptedSerializer, 201: SubmissionAcceptedSerializer},
    )
    def put(self, request: Request, number: int) -> Response:
        rnd = _round_or_404(number)
        headers = UploadHeadersSerializer.from_request(request)
        headers.is_valid(raise_exception=True)
        sub, created = services.submission_create(
            rnd=rnd,
            bank=request_bank(request),
            upload=headers.upload(body=request._request),
            admit=_upload_slot,
        )
        return Response(
            SubmissionAcceptedSerializer(sub).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    def throttled(self, request: Request, wait: float | None) -> NoReturn:
        rate = BankUploadThrottle().rate
        raise exceptions.Throttled(
            wait, detail=f"too many uploads from this bank (limit {rate}); retry later"
        )


@contextmanager
def _upload_slot() -> Iterator[None]:
    """Hold one of this worker's upload slots while a body is read and checked, or 429."""
    if not _upload_slots.acquire(blocking=False):
        raise exceptions.Throttled(
            2, detail="the portal is busy with other uploads; retry in a few seconds"
        )
    try:
        yield
    finally:
        _upload_slots.release()


class RoundMetricsView(APIView):
    """A bank reports metrics of the published model on its own held-out data."""

    permission_classes = [IsBank]

    @extend_schema(request=MetricsSerializer, responses={200: dict})
    @idempotent
    def post(self, request: Request, number: int) -> Response:
        serializer = MetricsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        report = services.metrics_report(
            rnd=_round_or_404(number),
            bank=request_bank(request),
            metrics=serializer.validated_data["metrics"],
            model_digest=serializer.validated_data["model_digest"],
        )
        receipt = MetricsReceipt(round=number, metrics=report.metrics, self_reported=True)
        return Response(receipt.to_dict())


class KeyEpochCurrentView(APIView):
    """The consortium's current key epoch; a node compares it with the key it holds."""

    permission_classes = [IsMemberOrStaff]

    @extend_schema(responses=KeyEpochSerializer)
    def get(self, request: Request) -> Response:
        epoch = selectors.key_epoch_current()
        if epoch is None:
            raise NotFound("no key epoch is registered yet")
        return Response(KeyEpochSerializer(epoch).data)


class KeyEpochCreateView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(request=KeyEpochCreateSerializer, responses={201: KeyEpochSerializer})
    @idempotent
    def post(self, request: Request) -> Response:
        serializer = KeyEpochCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            raw = base64.b64decode(serializer.validated_data["public_context_b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ApplicationError("public_context_b64 is not valid base64") from exc
        epoch = services.key_epoch_register(
            public_context=raw,
            ckks_params=serializer.validated_data["ckks_params"],
            actor=actor_of(request),
        )
        return Response(KeyEpochSerializer(epoch).data, status=status.HTTP_201_CREATED)


class PolicyListCreateView(generics.ListCreateAPIView):
    """Operators list policies and create new ones (or new versions of existing names)."""

    serializer_class = PolicySerializer
    permission_classes = [IsMemberOrStaff]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.policy_list()

    def get_permissions(self):  # type: ignore[no-untyped-def]
        return [IsOperator()] if self.request.method == "POST" else super().get_permissions()

    @idempotent
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = PolicySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        name, active = data.pop("name"), data.pop("active", False)
        policy = services.policy_create(name=name, actor=actor_of(request), activate=active, **data)
        return Response(PolicySerializer(policy).data, status=status.HTTP_201_CREATED)


class PolicyVersionView(APIView):
    """One policy version's snapshot, as a round under it would carry it.

    A bank trains its local-only baseline under a named version
    (``bank-node baseline --policy NAME:VERSION``) before any round runs it.
    """

    permission_classes = [IsMemberOrStaff]

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, name: str, version: int) -> Response:
        policy = selectors.policy_get_by_version(name, version)
        if policy is None:
            raise NotFound(_no_policy_version(name, version))
        return Response(policy.snapshot())


def _no_policy_version(name: str, version: int) -> str:
    versions = selectors.policy_version_numbers(name)
    if not versions:
        return f"policy {name!r} does not exist"
    listed = ", ".join(str(v) for v in versions)
    return f"policy {name!r} has no version {version} (its versions: {listed})"


class PolicyActivateView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(request=None, responses=PolicySerializer)
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        policy = selectors.policy_get(pk)
        if policy is None:
            raise NotFound(f"policy {pk} does not exist")
        services.policy_activate(policy=policy, actor=actor_of(request))
        return Response(PolicySerializer(policy).data)

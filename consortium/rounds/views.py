"""REST views for rounds: thin wrappers around selectors and services."""

from __future__ import annotations

import base64
import binascii
import threading
import time
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consortium import metrics
from consortium.api.auth import BankPrincipal, IsBank, IsOperator, actor_of
from consortium.api.errors import ApplicationError, NotFound
from consortium.api.throttles import BankUploadThrottle
from consortium.rounds import selectors, services, storage
from consortium.rounds.models import Round, RoundPolicy, RoundState
from consortium.rounds.serializers import (
    KeyEpochCreateSerializer,
    KeyEpochSerializer,
    MetricsSerializer,
    PolicySerializer,
    RoundSerializer,
)
from protocol import MetricsReceipt, UpdateReceipt

CHUNK = 1024 * 1024
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

    def get_queryset(self):  # type: ignore[no-untyped-def]
        # An aggregate annotation drops Meta.ordering: order explicitly, newest first.
        return (
            selectors.round_list()
            .annotate(submission_count=Count("submissions"))
            .order_by("-number")
        )


class RoundCurrentView(APIView):
    """The round in flight (open or aggregating); 204 when there is none."""

    @extend_schema(responses={200: RoundSerializer, 204: None})
    def get(self, request: Request) -> Response:
        data = _current_round_payload()
        if data is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(data)


# Every bank polls this and every bank gets the same answer, so a worker keeps it for
# CONSORTIUM_STATUS_CACHE_SECONDS (default 1 s): at hundreds of polls a second the database
# sees about one query per worker per second instead of one per poll. A poller may see a
# state change up to that long after it happened; uploads and transitions never use it.
_current_cache: tuple[float, dict[str, Any] | None] | None = None


def _current_round_payload() -> dict[str, Any] | None:
    global _current_cache
    ttl = settings.STATUS_CACHE_SECONDS
    now = time.monotonic()
    if ttl > 0 and _current_cache is not None and now - _current_cache[0] < ttl:
        return _current_cache[1]
    rnd = selectors.round_in_flight()
    data = None if rnd is None else dict(RoundSerializer(rnd).data)
    _current_cache = (now, data)
    return data


class RoundDetailView(APIView):
    @extend_schema(responses=RoundSerializer)
    def get(self, request: Request, number: int) -> Response:
        rnd = _round_or_404(number)
        data: dict[str, Any] = dict(RoundSerializer(rnd).data)
        submissions = rnd.submissions.select_related("bank").order_by("bank__slug")
        if isinstance(request.user, BankPrincipal):
            # A bank sees its own submission and its own privacy spend, nobody else's.
            submissions = submissions.filter(bank=request.user.bank)
            data["submitted_by_you"] = next((s.digest for s in submissions), None)
        data["privacy"] = [
            {"bank": s.bank.slug, "epsilon_spent": s.epsilon_spent, "budget_left": s.budget_left}
            for s in submissions
            if s.epsilon_spent is not None
        ]
        return Response(data)


class RoundAggregateView(APIView):
    """Stream a published round's encrypted aggregate (never an individual update)."""

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
        responses={200: dict, 201: dict},
    )
    def put(self, request: Request, number: int) -> Response:
        bank = request.user.bank
        rnd = _round_or_404(number)
        digest = request.headers.get("X-Update-Digest", "").strip().lower()
        signature = request.headers.get("X-Update-Signature", "").strip()
        existing = services.update_precheck(rnd=rnd, bank=bank, digest=digest, signature=signature)
        if existing is not None:
            return Response(_accepted(existing), status=status.HTTP_200_OK)
        if not _upload_slots.acquire(blocking=False):
            raise exceptions.Throttled(
                2, detail="the portal is busy with other uploads; retry in a few seconds"
            )
        try:
            privacy = _privacy_claim(request)  # before the body: a refusal leaves no temp file
            body = _body_to_temp(request)
            sub = services.update_submit(
                rnd=rnd,
                bank=bank,
                body_path=body,
                digest=digest,
                signature=signature,
                privacy=privacy,
            )
        finally:
            _upload_slots.release()
        return Response(_accepted(sub), status=status.HTTP_201_CREATED)

    def throttled(self, request: Request, wait: float | None) -> None:
        rate = BankUploadThrottle().rate
        raise exceptions.Throttled(
            wait, detail=f"too many uploads from this bank (limit {rate}); retry later"
        )


def _privacy_claim(request: Request) -> services.PrivacyClaim:
    """Parse the optional ``X-Privacy-Epsilon`` / ``X-Privacy-Budget-Left`` headers."""
    raw_eps = request.headers.get("X-Privacy-Epsilon")
    raw_left = request.headers.get("X-Privacy-Budget-Left")
    try:
        epsilon = float(raw_eps) if raw_eps is not None else None
    except ValueError:
        epsilon = -1.0
    if epsilon is not None and not (0 <= epsilon < float("inf")):
        raise ApplicationError("X-Privacy-Epsilon must be a non-negative number")
    if raw_left is not None and raw_left.lower() not in {"true", "false"}:
        raise ApplicationError("X-Privacy-Budget-Left must be true or false")
    left = None if raw_left is None else raw_left.lower() == "true"
    return services.PrivacyClaim(epsilon=epsilon, budget_left=left)


def _accepted(sub: Any) -> dict[str, Any]:
    return UpdateReceipt(
        round=sub.round.number,
        bank=sub.bank.slug,
        digest=sub.digest,
        size_bytes=sub.size_bytes,
        received_at=sub.received_at,
    ).to_dict()


def _body_to_temp(request: Request) -> Any:
    """Copy the request body to a temp file in bounded memory, enforcing the size limit."""
    limit = settings.MAX_UPLOAD_BYTES
    declared = request.headers.get("Content-Length")
    too_big = ApplicationError(
        f"upload larger than the {limit}-byte limit", status_code=413, limit=limit
    )
    if declared and declared.isdigit() and int(declared) > limit:
        metrics.update_rejected("too_large")
        raise too_big
    path = storage.temp_path()
    written = 0
    try:
        with open(path, "wb") as out:
            while piece := request._request.read(CHUNK):
                written += len(piece)
                if written > limit:
                    metrics.update_rejected("too_large")
                    raise too_big
                out.write(piece)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    metrics.UPLOAD_BYTES.inc(written)
    if declared and declared.isdigit() and written < int(declared):
        # The client went away mid-body (a killed node, a dropped connection): nothing of
        # it is kept, and the node's retry starts afresh.
        metrics.update_rejected("incomplete")
        path.unlink(missing_ok=True)
        raise ApplicationError(
            f"the upload ended after {written} of the {declared} declared bytes; retry it"
        )
    if written == 0:
        metrics.update_rejected("empty")
        path.unlink(missing_ok=True)
        raise ApplicationError("the upload body is empty; send the encrypted update")
    return path


class RoundMetricsView(APIView):
    """A bank reports metrics of the published model on its own held-out data."""

    permission_classes = [IsBank]

    @extend_schema(request=MetricsSerializer, responses={200: dict})
    def post(self, request: Request, number: int) -> Response:
        serializer = MetricsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        report = services.metrics_report(
            rnd=_round_or_404(number),
            bank=request.user.bank,
            metrics=serializer.validated_data["metrics"],
        )
        receipt = MetricsReceipt(round=number, metrics=report.metrics, self_reported=True)
        return Response(receipt.to_dict())


class KeyEpochCurrentView(APIView):
    """The consortium's current key epoch; a node compares it with the key it holds."""

    @extend_schema(responses=KeyEpochSerializer)
    def get(self, request: Request) -> Response:
        epoch = selectors.key_epoch_current()
        if epoch is None:
            raise NotFound("no key epoch is registered yet")
        return Response(KeyEpochSerializer(epoch).data)


class KeyEpochCreateView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(request=KeyEpochCreateSerializer, responses={201: KeyEpochSerializer})
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
    queryset = RoundPolicy.objects.all()

    def get_permissions(self):  # type: ignore[no-untyped-def]
        return [IsOperator()] if self.request.method == "POST" else super().get_permissions()

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = PolicySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        name, active = data.pop("name"), data.pop("active", False)
        policy = services.policy_create(name=name, actor=actor_of(request), activate=active, **data)
        return Response(PolicySerializer(policy).data, status=status.HTTP_201_CREATED)


class PolicyActivateView(APIView):
    permission_classes = [IsOperator]

    @extend_schema(request=None, responses=PolicySerializer)
    def post(self, request: Request, pk: int) -> Response:
        policy = RoundPolicy.objects.filter(pk=pk).first()
        if policy is None:
            raise NotFound(f"policy {pk} does not exist")
        services.policy_activate(policy=policy, actor=actor_of(request))
        return Response(PolicySerializer(policy).data)

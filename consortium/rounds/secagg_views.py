"""REST views of secure aggregation v2: mask keys, the unmask request, reveals, and the
masked uploads members may read once a round is published. Thin: parse, one call, answer.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consortium.api.auth import IsBank, IsMemberOrStaff, actor_of, request_bank
from consortium.api.errors import ApplicationError, Conflict, Forbidden, NotFound
from consortium.api.idempotency import idempotent
from consortium.members.models import Bank
from consortium.rounds import secagg_selectors, selectors, services
from consortium.rounds.models import Round, RoundState
from consortium.rounds.secagg_serializers import (
    CohortKeysSerializer,
    MaskKeyReceiptSerializer,
    MaskKeysPostSerializer,
    RevealReceiptSerializer,
    RevealSerializer,
    UnmaskRequestSerializer,
)
from protocol import MaskKeysPost, ProtocolError, Reveal

Message = TypeVar("Message", MaskKeysPost, Reveal)

# States in which the unmask request exists: it is fixed when uploads close.
_UNMASKED_STATES = {RoundState.UNMASKING, RoundState.AGGREGATING, RoundState.PUBLISHED}


def _parse(cls: type[Message], data: Any) -> Message:
    """The body as the protocol's message, or a 400 naming the offending field."""
    try:
        return cls.from_dict(data)
    except ProtocolError as exc:
        raise ApplicationError(f"{cls.__name__}: {exc}", field=exc.field) from None


def _v2_round(number: int) -> Round:
    rnd = selectors.round_get(number)
    if rnd is None:
        raise NotFound(f"round {number} does not exist")
    if not secagg_selectors.round_is_masked(rnd):
        raise Conflict(f"round {number} runs secure aggregation v1: it has no mask keys")
    return rnd


def _among(bank: Bank, members: list[str], number: int, what: str) -> None:
    if bank.slug not in members:
        raise Forbidden(f"bank {bank.slug} is not among round {number}'s {what}")


class MaskKeysView(APIView):
    """A cohort bank posts its mask keys (sharing) and reads everyone's (then uploads)."""

    permission_classes = [IsBank]

    @extend_schema(request=MaskKeysPostSerializer, responses={200: MaskKeyReceiptSerializer})
    def put(self, request: Request, number: int) -> Response:
        row = services.mask_key_submit(
            number=number,
            bank=request_bank(request),
            post=_parse(MaskKeysPost, request.data),
            actor=actor_of(request),
        )
        # The same answer for a first post and its retries.
        return Response(MaskKeyReceiptSerializer(row).data)

    @extend_schema(responses={200: CohortKeysSerializer})
    def get(self, request: Request, number: int) -> Response:
        rnd, bank = _v2_round(number), request_bank(request)
        _among(bank, rnd.cohort, number, "cohort")
        return Response(secagg_selectors.cohort_keys_for(rnd, bank).to_dict())


class UnmaskView(APIView):
    """A survivor reads the round's one unmask request: who survived, who dropped."""

    permission_classes = [IsBank]

    @extend_schema(responses={200: UnmaskRequestSerializer})
    def get(self, request: Request, number: int) -> Response:
        rnd = _v2_round(number)
        if rnd.state not in _UNMASKED_STATES and not (
            rnd.state == RoundState.FAILED and rnd.survivors
        ):
            raise Conflict(
                f"round {number} is {rnd.state}; its unmask request is made when uploads close",
                state=rnd.state,
            )
        _among(request_bank(request), rnd.survivors, number, "survivors")
        return Response(secagg_selectors.unmask_request_for(rnd).to_dict())


class RevealView(APIView):
    """A survivor sends its signed reveal, answering the unmask request."""

    permission_classes = [IsBank]

    @extend_schema(request=RevealSerializer, responses={200: RevealReceiptSerializer})
    @idempotent
    def post(self, request: Request, number: int) -> Response:
        row = services.reveal_submit(
            number=number,
            bank=request_bank(request),
            reveal=_parse(Reveal, request.data),
            actor=actor_of(request),
        )
        return Response(RevealReceiptSerializer(row).data)


class SubmissionDownloadView(APIView):
    """One survivor's masked upload to a published v2 round, streamed (never in v1)."""

    permission_classes = [IsMemberOrStaff]

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, number: int, bank: str) -> FileResponse:
        rnd = selectors.round_get(number)
        if rnd is None:
            raise NotFound(f"round {number} does not exist")
        if not secagg_selectors.round_is_masked(rnd):
            raise NotFound(
                f"round {number} ran secure aggregation v1: its uploads are never served, "
                "because any holder of the consortium key could read them"
            )
        if rnd.state != RoundState.PUBLISHED:
            raise Conflict(
                f"round {number} is {rnd.state}; its masked uploads are served once it is "
                "published",
                state=rnd.state,
            )
        sub = secagg_selectors.submission_of(rnd, bank) if bank in rnd.survivors else None
        if sub is None:
            raise NotFound(f"bank {bank} is not a survivor of round {number}: no upload to serve")
        response = FileResponse(
            services.blob_open(sub.blob), content_type="application/octet-stream"
        )
        response["Content-Length"] = str(sub.size_bytes)
        response["X-Update-Digest"] = sub.digest
        response["X-Update-Signature"] = sub.signature
        return response

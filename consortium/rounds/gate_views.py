"""REST views of the evaluation gate: banks post signed verdicts, everyone reads them."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consortium.api.auth import IsBank, IsMemberOrStaff, request_bank
from consortium.api.errors import Conflict, NotFound
from consortium.api.idempotency import idempotent
from consortium.rounds import gate_selectors, selectors
from consortium.rounds.gate_serializers import (
    VerdictPostSerializer,
    VerdictSerializer,
    VerdictsResponseSerializer,
    verdicts_payload,
)
from consortium.rounds.models import Round, RoundKind
from consortium.rounds.services.gate import verdict_submit


def _evaluation_round(number: int) -> Round:
    rnd = selectors.round_get(number)
    if rnd is None:
        raise NotFound(f"round {number} does not exist")
    if rnd.kind != RoundKind.EVALUATION:
        raise Conflict(
            f"round {number} is a {rnd.kind} round; only evaluation rounds have verdicts"
        )
    return rnd


class VerdictsView(APIView):
    """An evaluation round's signed verdicts and the decision they give; banks post theirs."""

    permission_classes = [IsMemberOrStaff]

    def get_permissions(self):  # type: ignore[no-untyped-def]
        return [IsBank()] if self.request.method == "POST" else super().get_permissions()

    @extend_schema(responses=VerdictsResponseSerializer)
    def get(self, request: Request, number: int) -> Response:
        rnd = _evaluation_round(number)
        candidate = rnd.candidate_round.number if rnd.candidate_round else None
        rows = gate_selectors.verdict_list(rnd)
        tally = gate_selectors.evaluation_tally(rnd)
        return Response(verdicts_payload(rnd.number, candidate, tally, rows))

    @extend_schema(
        request=VerdictPostSerializer, responses={200: VerdictSerializer, 201: VerdictSerializer}
    )
    @idempotent
    def post(self, request: Request, number: int) -> Response:
        body = VerdictPostSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        row, created = verdict_submit(
            number=number,
            bank=request_bank(request),
            verdict_json=body.validated_data["verdict"],
            signature=body.validated_data["signature"],
        )
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        # With the round's tally, so that "counted" says whether this verdict counts.
        tally = gate_selectors.evaluation_tally(row.round)
        return Response(VerdictSerializer(row, context={"tally": tally}).data, status=code)

"""An evaluation round on the real v1 data path: encrypted gate vectors uploaded, summed and
published, verdicts bound to that aggregate, and the next training round built on it."""

from __future__ import annotations

import pytest
from django.utils import timezone

from consortium.rounds.models import Round, RoundKind, RoundState
from consortium.rounds.services import round_open_next, scheduler_tick
from he.codec import TRAILER_SLOTS
from models.gate import GATE_VECTOR_LENGTH
from tests.consortium.gate.conftest import all_agree, publish
from tests.portal.conftest import submit

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore")]


def _next() -> Round:
    round_open_next(timezone.now())
    return Round.objects.latest("number")


def test_an_evaluation_round_collects_gate_vectors_publishes_and_its_verdicts_decide(
    client, ckks, banks, gated
):
    candidate = publish(_next())
    evaluation = _next()
    assert evaluation.kind == RoundKind.EVALUATION
    for seed, founder in enumerate(banks.values()):
        response = submit(ckks, evaluation, founder.persona, seed=seed)
        assert response.status_code == 201, response.json()
    scheduler_tick()  # everyone sent: aggregating, then summed and published
    evaluation.refresh_from_db()
    assert evaluation.state == RoundState.PUBLISHED and len(evaluation.aggregate_digest) == 64
    assert [i["bank"] for i in evaluation.manifest["inputs"]] == sorted(banks)
    all_agree(client, banks, evaluation, "adopt")
    following = _next()
    assert following.kind == RoundKind.TRAINING and following.base_round == candidate


def test_an_evaluation_round_refuses_an_update_of_the_training_length(ckks, banks, gated):
    publish(_next())
    evaluation = _next()
    evaluation.vector_length = gated.vector_length  # what a node mistaking the kind sends
    response = submit(ckks, evaluation, banks["alpha"].persona)
    assert response.status_code == 400
    needed = GATE_VECTOR_LENGTH + TRAILER_SLOTS
    assert (
        f"vector has {gated.vector_length} values, this round's model needs {needed}"
        in (response.json()["message"])
    )

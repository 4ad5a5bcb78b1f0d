"""The scheduler under a gated policy: training -> evaluation -> training, based on the
banks' verified verdicts only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from audit.models import AuditEvent
from consortium.rounds.models import GateVerdict, Round, RoundKind, RoundState
from consortium.rounds.selectors import round_base_for
from consortium.rounds.services import round_open_next
from he.codec import TRAILER_SLOTS
from models.gate import GATE_VECTOR_LENGTH
from tests.consortium.gate.conftest import (
    after_deadline,
    all_agree,
    fail,
    gated_policy_create,
    post_verdict,
    publish,
    verdict,
)
from tests.consortium.secagg_rounds.conftest import roster_store

pytestmark = pytest.mark.django_db


def _open(now=None) -> Round:
    done = round_open_next(now or timezone.now())
    assert len(done) == 1 and "opened" in done[0], done
    return Round.objects.latest("number")


def _trained_and_evaluated(banks) -> tuple[Round, Round]:
    candidate = publish(_open())
    return candidate, publish(_open(), digest="e1" * 32)


def _decided() -> list[tuple[int, int, str]]:
    events = AuditEvent.objects.filter(action="round.gate_decided").order_by("seq")
    return [(e.data["round"], e.data["candidate_round"], e.data["decision"]) for e in events]


def test_the_round_after_a_gated_training_round_is_its_evaluation_round(banks, gated):
    candidate = publish(_open())
    evaluation = _open()
    assert evaluation.kind == RoundKind.EVALUATION
    assert evaluation.candidate_round == candidate
    assert evaluation.base_round == candidate.base_round
    assert evaluation.stats_round == candidate.stats_round
    assert evaluation.vector_length == GATE_VECTOR_LENGTH + TRAILER_SLOTS
    opened = AuditEvent.objects.filter(action="round.opened").latest("seq")
    assert opened.data["candidate_round"] == candidate.number
    assert opened.data["kind"] == "evaluation"


def test_the_next_training_round_waits_for_the_verdicts(banks, gated):
    _trained_and_evaluated(banks)
    assert round_open_next(timezone.now()) == []
    assert _decided() == []


def test_an_adopted_candidate_is_the_next_base(client, banks, gated):
    candidate, evaluation = _trained_and_evaluated(banks)
    all_agree(client, banks, evaluation, "adopt")
    following = _open()
    assert following.kind == RoundKind.TRAINING
    assert following.base_round == candidate
    assert _decided() == [(evaluation.number, candidate.number, "adopt")]


def test_a_rejected_candidate_is_never_a_base_and_training_continues_from_the_previous(
    client, banks, gated
):
    first, first_eval = _trained_and_evaluated(banks)
    all_agree(client, banks, first_eval, "adopt")
    second = publish(_open())
    assert second.base_round == first
    second_eval = publish(_open(), digest="e2" * 32)
    assert second_eval.base_round == first and second_eval.candidate_round == second
    all_agree(client, banks, second_eval, "reject")
    third = _open()
    assert third.kind == RoundKind.TRAINING and third.base_round == first
    assert round_base_for(gated) == first
    assert _decided()[-1] == (second_eval.number, second.number, "reject")


def test_an_undecided_candidate_is_passed_over_once_the_verdict_deadline_passes(
    client, banks, gated
):
    candidate, evaluation = _trained_and_evaluated(banks)
    for slug in ("alpha", "beta"):  # two adopt verdicts: below the threshold of three
        assert post_verdict(client, banks[slug], evaluation, "adopt").status_code == 201
    assert round_open_next(after_deadline(evaluation) - timedelta(seconds=2)) == []
    following = _open(after_deadline(evaluation))
    assert following.kind == RoundKind.TRAINING and following.base_round is None
    assert _decided() == [(evaluation.number, candidate.number, "undecided")]


def test_a_failed_evaluation_round_leaves_its_candidate_undecided(banks, gated):
    candidate = publish(_open())
    fail(_open())
    following = _open()
    assert following.kind == RoundKind.TRAINING and following.base_round is None
    assert round_base_for(gated) is None
    assert _decided()[0][1:] == (candidate.number, "undecided")


def test_a_decision_is_audited_once_however_many_ticks_follow(client, banks, gated):
    _candidate, evaluation = _trained_and_evaluated(banks)
    all_agree(client, banks, evaluation, "adopt")
    following = _open()
    fail(following)
    _open()
    assert len(_decided()) == 1


def test_evaluation_rounds_do_not_count_toward_max_rounds(client, members, ckks, epoch):
    policy = gated_policy_create(max_rounds=1)
    roster_store(members, ckks, policy)
    candidate = publish(_open())
    evaluation = publish(_open(), digest="e1" * 32)
    assert evaluation.kind == RoundKind.EVALUATION and evaluation.candidate_round == candidate
    all_agree(client, members, evaluation, "adopt")
    assert round_open_next(timezone.now()) == []  # the one training round is done
    assert _decided() == [(evaluation.number, candidate.number, "adopt")]


def test_an_operator_s_fake_adopt_rows_without_valid_signatures_make_no_base(banks, gated):
    candidate, evaluation = _trained_and_evaluated(banks)
    for slug in ("alpha", "beta", "gamma"):
        body = verdict(evaluation, slug, "adopt").to_dict()
        GateVerdict.objects.create(
            round=evaluation, bank=banks[slug].persona.bank, verdict=body, signature="A" * 88
        )
    assert round_base_for(gated) is None
    assert round_open_next(timezone.now()) == []  # still waiting: no verdict counts
    following = _open(after_deadline(evaluation))
    assert following.base_round is None and following.base_round != candidate
    assert _decided() == [(evaluation.number, candidate.number, "undecided")]


def test_an_ungated_policy_never_opens_an_evaluation_round(members, ckks, epoch):
    policy = gated_policy_create(gate_tolerance=None)
    roster_store(members, ckks, policy)
    first = publish(_open())
    second = _open()
    assert second.kind == RoundKind.TRAINING and second.base_round == first
    assert not Round.objects.filter(kind=RoundKind.EVALUATION).exists()


def test_a_v2_evaluation_round_opens_in_the_sharing_phase_like_any_other(members, ckks, epoch):
    policy = gated_policy_create(secure_aggregation="v2")
    roster_store(members, ckks, policy)
    publish(_open())
    evaluation = _open()
    assert evaluation.kind == RoundKind.EVALUATION
    assert evaluation.state == RoundState.SHARING and evaluation.masked
    assert evaluation.cohort == ["alpha", "beta", "delta", "gamma"]


def test_a_decision_is_counted_in_the_scheduler_s_metrics_once_committed(
    client, banks, gated, django_capture_on_commit_callbacks
):
    def count() -> float:
        value = REGISTRY.get_sample_value("consortium_gate_decisions_total", {"decision": "reject"})
        return value or 0.0

    _candidate, evaluation = _trained_and_evaluated(banks)
    all_agree(client, banks, evaluation, "reject")
    before = count()
    with django_capture_on_commit_callbacks(execute=True):
        _open()
    assert count() == before + 1
    assert REGISTRY.get_sample_value("consortium_gate_last_decision") == 0.0

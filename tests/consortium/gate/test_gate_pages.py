"""The portal's pages show the gate: the candidate's decision with its figures, what an
evaluation round gates, and rejected candidates in the rounds table."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from consortium.rounds.models import GateVerdict, Round
from consortium.rounds.services import round_open_next
from tests.consortium.gate.conftest import after_deadline, all_agree, post_verdict, publish
from tests.portal.test_portal_pages import text

pytestmark = pytest.mark.django_db


@pytest.fixture
def op(operator: Any) -> Client:
    client = Client()
    client.force_login(operator)
    return client


def _next(now=None) -> Round:
    round_open_next(now or timezone.now())
    return Round.objects.latest("number")


@pytest.fixture
def evaluation(banks, gated) -> Round:
    publish(_next())
    return publish(_next(), digest="e1" * 32)


def test_an_adopted_candidate_s_page_shows_the_decision_figures_and_signers(
    client, op, banks, evaluation
):
    all_agree(client, banks, evaluation, "adopt")
    page = text(op.get(f"/rounds/{evaluation.candidate_round.number}/"))
    assert f"Gated by evaluation round {evaluation.number}" in page
    assert "adopted 3 or more member banks signed" in page
    assert "Candidate (round 1) 0.610 0.550" in page
    assert "Current (initial model) 0.520 0.500" in page
    assert "Recall at the alert budget (1.00% of rows flagged)" in page
    assert page.count("verified, counted") == 3


def test_a_rejected_candidate_is_marked_on_its_page_and_in_the_rounds_table(
    client, op, banks, evaluation
):
    all_agree(client, banks, evaluation, "reject")
    page = text(op.get(f"/rounds/{evaluation.candidate_round.number}/"))
    assert "rejected 3 or more member banks signed" in page
    assert "no round is built on it" in page
    table = op.get("/rounds/").content.decode()
    assert table.count('data-testid="gate-rejected"') == 1


def test_the_evaluation_round_s_page_says_what_it_gates(op, banks, evaluation):
    page = text(op.get(f"/rounds/{evaluation.number}/"))
    assert "evaluation gate of round 1" in page
    assert "This evaluation round gates training round 1" in page
    assert "waiting for verdicts" in page
    assert "No bank has signed a verdict yet." in page


def test_a_verdict_that_does_not_count_is_shown_with_its_reason(client, op, banks, evaluation):
    post_verdict(client, banks["alpha"], evaluation)
    GateVerdict.objects.filter(bank__slug="alpha").update(signature="A" * 88)
    page = text(op.get(f"/rounds/{evaluation.number}/"))
    assert "not counted: signature does not verify" in page


def test_a_candidate_past_its_verdict_deadline_is_shown_undecided(op, banks, evaluation):
    _next(after_deadline(evaluation))
    page = text(op.get(f"/rounds/{evaluation.candidate_round.number}/"))
    assert "undecided" in page and "is never a base" in page


def test_a_gated_round_not_yet_evaluated_says_so(op, banks, gated):
    candidate = publish(_next())
    page = text(op.get(f"/rounds/{candidate.number}/"))
    assert "not evaluated yet" in page

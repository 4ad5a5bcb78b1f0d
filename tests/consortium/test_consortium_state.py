"""No silent halts: each reason reached through real rounds, audited once, measured, resumed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from consortium.members.models import BankStatus
from consortium.members.services import bank_set_status
from consortium.metrics import DatabaseCollector
from consortium.rounds.models import Round, RoundKind, RoundPolicy, RoundState
from consortium.rounds.selectors import round_in_flight
from consortium.rounds.selectors_state import HaltCode, consortium_state
from consortium.rounds.services import (
    policy_activate,
    policy_create,
    policy_new_version,
    scheduler_tick,
)
from tests.conftest import encrypted_update, upload_headers

pytestmark = pytest.mark.django_db

MODEL = {"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"}


def _policy(**fields: Any) -> RoundPolicy:
    settings = {
        "min_banks": 3,
        "deadline": timedelta(minutes=10),
        "normalize_features": False,
        "model_spec": MODEL,
        "secure_aggregation": "v1",  # these tests send v1 containers
        **fields,
    }
    return policy_create(name="halting", actor="test", activate=True, **settings)


def _upload(
    ckks: Any, rnd: Round, persona: Any, *, epsilon: str | None = None, left: str | None = None
) -> None:
    body, _ = encrypted_update(ckks, rnd.vector_length, seed=hash(persona.slug) % 97)
    headers = upload_headers(persona, rnd.number, body, epsilon=epsilon, budget_left=left)
    response = Client().put(
        f"/api/v1/rounds/{rnd.number}/update",
        data=body,
        content_type="application/octet-stream",
        **headers,
    )
    assert response.status_code == 201, response.content


def _run_round(ckks: Any, banks: list[Any], **claim: str) -> Round:
    """Every bank uploads to the round in flight (opened first if need be); the tick
    publishes it and opens the next, if any."""
    rnd = round_in_flight()
    if rnd is None:
        scheduler_tick()
        rnd = round_in_flight()
    assert rnd is not None
    for persona in banks:
        _upload(ckks, rnd, persona, **claim)
    scheduler_tick()
    rnd.refresh_from_db()
    assert rnd.state == RoundState.PUBLISHED
    return rnd


def _halted_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="consortium.halted").order_by("seq"))


def _gauges() -> dict[str, float]:
    family = next(m for m in DatabaseCollector().collect() if m.name == "consortium_halted")
    return {s.labels["reason"]: s.value for s in family.samples}


@pytest.fixture
def three(bank_alpha: Any, bank_beta: Any, bank_gamma: Any) -> list[Any]:
    return [bank_alpha, bank_beta, bank_gamma]


def test_max_rounds_counts_training_rounds_only_and_halts_audited_once_across_ticks(
    ckks, epoch, three
):
    policy = _policy(max_rounds=2, normalize_features=True)
    scheduler_tick()  # opens the statistics round
    stats = round_in_flight()
    assert stats is not None and stats.kind == RoundKind.STATISTICS
    for persona in three:
        body, _ = encrypted_update(ckks, stats.vector_length, seed=1)
        response = Client().put(
            f"/api/v1/rounds/{stats.number}/update",
            data=body,
            content_type="application/octet-stream",
            **upload_headers(persona, stats.number, body),
        )
        assert response.status_code == 201
    scheduler_tick()
    _run_round(ckks, three)
    assert consortium_state().status == "running"
    _run_round(ckks, three)  # the second training round: max_rounds reached, nothing opens
    assert round_in_flight() is None and Round.objects.count() == 3
    for _ in range(10):
        scheduler_tick()
    state = consortium_state()
    assert state.status == "halted" and state.codes == ["max_rounds"]
    assert state.sentence == "halted: maximum rounds reached (2 of 2 training rounds)"
    assert "new policy version" in state.way_forward[0]
    events = _halted_events()
    assert len(events) == 1
    assert events[0].actor == "scheduler" and events[0].data["codes"] == ["max_rounds"]
    assert events[0].data["reasons"][0]["summary"] == state.reasons[0].summary
    gauges = _gauges()
    assert gauges["max_rounds"] == 1 and sum(gauges.values()) == 1
    assert set(gauges) == {str(code) for code in HaltCode}
    assert policy.rounds.count() == 3  # 3 rounds ran, 2 of them training: 2 of 2, not 3 of 2


def test_a_new_policy_version_resumes_it_audited_once_and_the_gauges_fall_to_zero(
    ckks, epoch, three
):
    policy = _policy(max_rounds=1)
    _run_round(ckks, three)
    scheduler_tick()
    assert consortium_state().codes == ["max_rounds"]
    newer = policy_new_version(base=policy, actor="test", max_rounds=2)
    policy_activate(policy=newer, actor="test")
    for _ in range(5):
        scheduler_tick()
    assert consortium_state().status == "running"
    resumed = list(AuditEvent.objects.filter(action="consortium.resumed"))
    assert len(resumed) == 1 and len(_halted_events()) == 1
    assert resumed[0].data["after"] == ["max_rounds"] and resumed[0].data["status"] == "running"
    assert resumed[0].seq > _halted_events()[0].seq
    assert sum(_gauges().values()) == 0


def test_consecutive_failures_halt_it_with_the_newest_failure_named(ckks, epoch, three):
    policy = _policy(max_consecutive_failures=2)
    scheduler_tick()
    for _ in range(2):  # nobody uploads: each round fails at its deadline
        rnd = round_in_flight()
        assert rnd is not None
        scheduler_tick(rnd.deadline_at + timedelta(seconds=1))
    assert Round.objects.filter(state=RoundState.FAILED).count() == 2
    for _ in range(4):
        scheduler_tick(timezone.now() + timedelta(hours=1))
    state = consortium_state()
    assert state.codes == ["consecutive_failures"]
    assert state.reasons[0].summary == "2 rounds failed in a row (limit 2)"
    assert "only 0 of the 3 required updates" in state.reasons[0].detail
    assert len(_halted_events()) == 1 and _gauges()["consecutive_failures"] == 1
    assert policy.rounds.count() == 2


def test_suspended_members_show_as_too_few_next_to_the_failures_they_cause(
    ckks, epoch, three, bank_alpha, bank_beta
):
    _policy(max_consecutive_failures=1)
    scheduler_tick()
    for persona in (bank_alpha, bank_beta):
        bank_set_status(bank=persona.bank, status=BankStatus.SUSPENDED, actor="test", reason="test")
    rnd = round_in_flight()
    assert rnd is not None
    scheduler_tick(rnd.deadline_at + timedelta(seconds=1))
    state = consortium_state()
    assert state.codes == ["consecutive_failures", "too_few_members"]
    members = state.reasons[1]
    assert members.summary == "too few active members (1 of the 3 a round needs)"
    assert "gamma" in members.detail and "Reactivate" in members.way_forward
    assert _halted_events()[-1].data["codes"] == state.codes


def test_the_privacy_budget_halt_names_the_banks_that_spent_theirs(
    ckks, epoch, three, bank_alpha, bank_beta, bank_gamma
):
    _policy(max_rounds=5, dp_target_epsilon=4.0)
    scheduler_tick()
    rnd = round_in_flight()
    assert rnd is not None
    _upload(ckks, rnd, bank_alpha, epsilon="3.9", left="false")
    _upload(ckks, rnd, bank_beta, epsilon="3.9", left="false")
    _upload(ckks, rnd, bank_gamma, epsilon="2.0", left="true")
    for _ in range(3):
        scheduler_tick()
    state = consortium_state()
    assert state.sentence == "halted: privacy budget spent by 2 of 3 banks"
    assert "alpha, beta signed that another round would pass their budget" in (
        state.reasons[0].detail
    )
    assert len(_halted_events()) == 1 and _gauges()["privacy_budget"] == 1


def test_without_an_active_policy_it_is_halted_and_says_what_to_create(epoch, bank_alpha):
    scheduler_tick()
    scheduler_tick()
    state = consortium_state()
    assert state.codes == ["no_policy"]
    assert "Create a policy" in state.way_forward[0]
    assert len(_halted_events()) == 1


def test_reasons_that_change_while_halted_are_recorded_again_but_only_once(ckks, epoch, three):
    policy = _policy(max_rounds=1)
    _run_round(ckks, three)
    scheduler_tick()
    RoundPolicy.objects.filter(pk=policy.pk).update(active=False)  # stands in for a rollback
    for _ in range(3):
        scheduler_tick()
    assert [e.data["codes"] for e in _halted_events()] == [["max_rounds"], ["no_policy"]]


def test_consortium_status_prints_the_state_reasons_and_way_forward(ckks, epoch, three, capsys):
    _policy(max_rounds=1)
    _run_round(ckks, three)
    call_command("consortium_status")
    out = capsys.readouterr().out
    assert "consortium halted: maximum rounds reached (1 of 1 training rounds)" in out
    assert "[max_rounds]" in out and "way forward: Publish a new policy version" in out
    assert "1 of 1 training round(s) published, 1 round(s) in all" in out

"""Verdicts and scheduler ticks arriving together: one verdict per bank, one decision event,
one next round (PostgreSQL: SQLite serialises every write, which would prove nothing)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from audit.models import AuditEvent
from consortium.api.errors import ApplicationError
from consortium.rounds.models import GateVerdict, Round, RoundKind
from consortium.rounds.services import round_open_next
from consortium.rounds.services.gate import verdict_submit
from governance.verdict import sign_verdict
from tests.consortium.gate.conftest import publish, verdict
from tests.governance.portal_helpers import Founder

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="SQLite serialises every write on one file lock, so parallel verdicts prove "
        "nothing there; the PostgreSQL run (scripts/with-postgres.sh) executes this test",
    ),
    pytest.mark.django_db(transaction=True),
]


def _together(work: Callable[[int], Any], n: int) -> tuple[list[Any], list[BaseException]]:
    start = threading.Barrier(n)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait()
            results.append(work(i))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors


def _evaluation() -> Round:
    round_open_next(timezone.now())
    publish(Round.objects.latest("number"))
    round_open_next(timezone.now())
    return publish(Round.objects.latest("number"), digest="e1" * 32)


def _submit(bank: Founder, evaluation: Round, decision: str) -> bool:
    body = verdict(evaluation, bank.slug, decision)
    _row, created = verdict_submit(
        number=evaluation.number,
        bank=bank.persona.bank,
        verdict_json=body.to_dict(),
        signature=sign_verdict(body, bank.keys.key),
    )
    return created


def test_the_same_verdict_sent_twice_at_once_is_stored_once(banks, gated):
    evaluation = _evaluation()
    results, errors = _together(lambda _i: _submit(banks["alpha"], evaluation, "adopt"), 2)
    assert not errors, errors
    assert sorted(results) == [False, True]
    assert GateVerdict.objects.count() == 1
    assert AuditEvent.objects.filter(action="gate.verdict_recorded").count() == 1


def test_two_different_verdicts_by_one_bank_at_once_store_one_and_refuse_the_other(banks, gated):
    evaluation = _evaluation()
    decisions = ("adopt", "reject")
    results, errors = _together(lambda i: _submit(banks["alpha"], evaluation, decisions[i]), 2)
    assert results == [True]
    assert len(errors) == 1 and isinstance(errors[0], ApplicationError)
    assert errors[0].status_code == 409
    assert GateVerdict.objects.count() == 1


def test_schedulers_ticking_together_after_a_decision_open_one_round_and_audit_it_once(
    banks, gated
):
    evaluation = _evaluation()
    for slug in ("alpha", "beta", "gamma"):
        assert _submit(banks[slug], evaluation, "adopt")
    results, errors = _together(lambda _i: round_open_next(timezone.now()), 3)
    assert not errors, errors
    assert sum(len(r) for r in results) == 1
    following = Round.objects.latest("number")
    assert (
        following.kind == RoundKind.TRAINING and following.base_round == evaluation.candidate_round
    )
    assert AuditEvent.objects.filter(action="round.gate_decided").count() == 1

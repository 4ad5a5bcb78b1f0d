"""Retries of one POST arriving while the first still runs: one change, one answer for all
(PostgreSQL: SQLite serialises every write, which would prove nothing)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client

from consortium.api.idempotency import REPLAYED_HEADER
from consortium.rounds.models import RoundPolicy
from tests.consortium.gate.test_gate_concurrency import _together

pytestmark = [
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="SQLite serialises every write on one file lock, so parallel retries prove "
        "nothing there; the PostgreSQL run (scripts/with-postgres.sh) executes this test",
    ),
    pytest.mark.django_db(transaction=True),
]

POLICY = {"name": "raced", "min_banks": 3}


def test_three_attempts_of_one_policy_post_at_once_create_one_version_and_answer_alike(operator):
    clients = [Client() for _ in range(3)]
    for client in clients:
        client.force_login(operator)

    def attempt(i: int) -> tuple[int, dict[str, object], bool]:
        response = clients[i].post(
            "/api/v1/policies/",
            POLICY,
            content_type="application/json",
            HTTP_IDEMPOTENCY_KEY="raced-key-0000001",
        )
        return response.status_code, response.json(), REPLAYED_HEADER in response

    results, errors = _together(attempt, 3)
    assert not errors, errors
    assert [status for status, _body, _replayed in results] == [201, 201, 201]
    assert len({str(body) for _status, body, _replayed in results}) == 1
    assert sorted(replayed for _status, _body, replayed in results) == [False, True, True]
    assert RoundPolicy.objects.filter(name="raced").count() == 1

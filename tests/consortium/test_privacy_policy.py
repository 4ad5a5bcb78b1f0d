"""Differential privacy under a round policy: epsilon reported, stored, enforced."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from consortium.rounds.models import Round, RoundState, Submission
from consortium.rounds.selectors import round_in_flight
from consortium.rounds.services import policy_create, round_open_next, scheduler_tick
from tests.conftest import encrypted_update, upload_headers

pytestmark = pytest.mark.django_db


@pytest.fixture
def dp_round(epoch: Any, bank_alpha: Any, bank_beta: Any, bank_gamma: Any) -> Round:
    policy_create(
        name="private",
        actor="test",
        activate=True,
        min_banks=3,
        max_rounds=5,
        deadline=timedelta(minutes=10),
        normalize_features=False,
        dp_target_epsilon=4.0,
        dp_delta=1e-5,
        model_spec={"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"},
        secure_aggregation="v1",  # these tests send v1 containers
    )
    round_open_next(timezone.now())
    rnd = round_in_flight()
    assert rnd is not None
    return rnd


def _put(client: Any, rnd: Round, persona: Any, **privacy: Any) -> Any:
    body, _ = encrypted_update(rnd_ckks(), rnd.vector_length, seed=hash(persona.slug) % 100)
    headers = upload_headers(persona, rnd.number, body, **privacy)
    return client.put(
        f"/api/v1/rounds/{rnd.number}/update",
        data=body,
        content_type="application/octet-stream",
        **headers,
    )


_CKKS: list[Any] = []


def rnd_ckks() -> Any:
    return _CKKS[0]


@pytest.fixture(autouse=True)
def _ckks(ckks: Any) -> None:
    _CKKS[:] = [ckks]


def test_under_a_dp_policy_an_update_without_epsilon_is_refused(client, dp_round, bank_alpha):
    response = _put(client, dp_round, bank_alpha)
    assert response.status_code == 400
    assert "X-Privacy-Epsilon" in response.json()["message"]
    assert dp_round.submissions.count() == 0


def test_an_update_reporting_more_than_the_budget_is_refused(client, dp_round, bank_alpha):
    response = _put(client, dp_round, bank_alpha, epsilon="4.5", budget_left="false")
    assert response.status_code == 403
    assert "exceeds the policy's budget" in response.json()["message"]


def test_reported_epsilon_is_stored_audited_and_shown_only_to_whom_it_may_concern(
    client, dp_round, bank_alpha, bank_beta, operator
):
    from audit.models import AuditEvent

    assert _put(client, dp_round, bank_alpha, epsilon="1.25", budget_left="true").status_code == 201
    assert _put(client, dp_round, bank_beta, epsilon="2.5", budget_left="true").status_code == 201
    sub = Submission.objects.get(round=dp_round, bank=bank_alpha.bank)
    assert sub.epsilon_spent == 1.25 and sub.budget_left is True
    event = AuditEvent.objects.filter(action="update.accepted").last()
    assert event is not None
    assert event.data["epsilon_spent"] == 2.5
    own = client.get(f"/api/v1/rounds/{dp_round.number}", **bank_alpha.auth()).json()
    assert own["privacy"] == [{"bank": "alpha", "epsilon_spent": 1.25, "budget_left": True}]
    client.force_login(operator)
    everyone = client.get(f"/api/v1/rounds/{dp_round.number}").json()
    assert [p["bank"] for p in everyone["privacy"]] == ["alpha", "beta"]


@pytest.mark.parametrize(
    "header, value", [("epsilon", "lots"), ("epsilon", "-1"), ("budget_left", "maybe")]
)
def test_malformed_privacy_headers_are_refused_with_a_message(
    client, dp_round, bank_alpha, header, value
):
    response = _put(client, dp_round, bank_alpha, **{header: value})
    assert response.status_code == 400
    assert "X-Privacy" in response.json()["message"]


def test_training_stops_when_too_few_banks_have_budget_left(
    client, dp_round, bank_alpha, bank_beta, bank_gamma
):
    _put(client, dp_round, bank_alpha, epsilon="3.9", budget_left="false")
    _put(client, dp_round, bank_beta, epsilon="3.9", budget_left="true")
    _put(client, dp_round, bank_gamma, epsilon="3.9", budget_left="true")
    scheduler_tick()
    dp_round.refresh_from_db()
    assert dp_round.state == RoundState.PUBLISHED
    # min_banks is 3 and only two banks can afford another round: no round opens.
    assert not Round.objects.filter(state=RoundState.OPEN).exists()


def test_an_epsilon_changed_after_signing_is_refused_and_nothing_is_stored(
    client, dp_round, bank_alpha
):
    body, _ = encrypted_update(rnd_ckks(), dp_round.vector_length, seed=5)
    headers = upload_headers(bank_alpha, dp_round.number, body, epsilon="3.5", budget_left="true")
    # Someone between the bank and the portal lowers the claimed spend; the signature stays.
    headers["HTTP_X_PRIVACY_EPSILON"] = "0.5"
    response = client.put(
        f"/api/v1/rounds/{dp_round.number}/update",
        data=body,
        content_type="application/octet-stream",
        **headers,
    )
    assert response.status_code == 403
    assert "consortium-update-v2" in response.json()["message"]
    assert dp_round.submissions.count() == 0


def test_under_a_dp_policy_a_v1_signature_without_the_claim_is_refused(
    client, dp_round, bank_alpha
):
    body, _ = encrypted_update(rnd_ckks(), dp_round.vector_length, seed=6)
    headers = upload_headers(bank_alpha, dp_round.number, body)  # signs v1: no claim inside
    headers.update({"HTTP_X_PRIVACY_EPSILON": "1.0", "HTTP_X_PRIVACY_BUDGET_LEFT": "true"})
    response = client.put(
        f"/api/v1/rounds/{dp_round.number}/update",
        data=body,
        content_type="application/octet-stream",
        **headers,
    )
    assert response.status_code == 403
    assert dp_round.submissions.count() == 0

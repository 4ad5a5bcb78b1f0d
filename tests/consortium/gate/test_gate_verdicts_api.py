"""POST/GET /api/v1/rounds/{n}/verdicts: what a bank may post, and what everyone reads."""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from consortium.rounds.models import GateVerdict, Round
from consortium.rounds.services import round_open_next
from governance.verdict import sign_verdict
from protocol import RoundInfo
from tests.consortium.gate.conftest import all_agree, post_verdict, publish, verdict
from tests.governance.portal_helpers import OPERATOR_PASSWORD, basic

pytestmark = pytest.mark.django_db


def _next() -> Round:
    round_open_next(timezone.now())
    return Round.objects.latest("number")


@pytest.fixture
def evaluation(banks, gated) -> Round:
    publish(_next())
    return publish(_next(), digest="e1" * 32)


def _message(response) -> str:
    return str(response.json()["message"])


def test_a_bank_s_first_verdict_is_stored_and_audited(client, banks, evaluation):
    response = post_verdict(client, banks["alpha"], evaluation)
    assert response.status_code == 201, response.json()
    assert response.json()["bank"] == "alpha" and response.json()["round"] == evaluation.number
    assert response.json()["counted"] is True and response.json()["ignored"] is None
    event = AuditEvent.objects.get(action="gate.verdict_recorded")
    assert event.data["round"] == evaluation.number
    assert event.data["verdict"]["decision"] == "adopt"


def test_the_same_verdict_again_is_a_200_and_stores_nothing_new(client, banks, evaluation):
    assert post_verdict(client, banks["alpha"], evaluation).status_code == 201
    assert post_verdict(client, banks["alpha"], evaluation).status_code == 200
    assert GateVerdict.objects.count() == 1
    assert AuditEvent.objects.filter(action="gate.verdict_recorded").count() == 1


def test_a_different_second_verdict_by_the_same_bank_is_a_409(client, banks, evaluation):
    assert post_verdict(client, banks["alpha"], evaluation, "adopt").status_code == 201
    response = post_verdict(client, banks["alpha"], evaluation, "reject")
    assert response.status_code == 409
    assert "already sent a different verdict" in _message(response)
    assert GateVerdict.objects.get().verdict["decision"] == "adopt"


def test_a_forged_signature_is_refused(client, banks, evaluation):
    response = post_verdict(client, banks["alpha"], evaluation, signer=banks["beta"])
    assert response.status_code == 403
    assert "does not verify under the bank's roster key" in _message(response)
    assert not GateVerdict.objects.exists()
    assert AuditEvent.objects.filter(action="gate.verdict_refused").exists()


def test_a_verdict_in_someone_else_s_name_is_refused(client, banks, evaluation):
    body = verdict(evaluation, "beta")
    signature = sign_verdict(body, banks["beta"].keys.key)
    response = client.post(
        f"/api/v1/rounds/{evaluation.number}/verdicts",
        data=json.dumps({"verdict": body.to_dict(), "signature": signature}),
        content_type="application/json",
        **banks["alpha"].auth(),
    )
    assert response.status_code == 403
    assert "signed as bank 'beta'; you are 'alpha'" in _message(response)
    assert not GateVerdict.objects.exists()


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"aggregate_digest": "ff" * 32}, "is about aggregate " + "ff" * 32),
        ({"candidate_round": 7}, "names candidate round 7"),
        ({"round_number": 9}, "names evaluation round 9"),
        ({"consortium_id": "other"}, "is signed for consortium 'other'"),
    ],
)
def test_a_verdict_about_something_else_is_a_400(client, banks, evaluation, changes, words):
    response = post_verdict(client, banks["alpha"], evaluation, **changes)
    assert response.status_code == 400
    assert words in _message(response)


def test_a_verdict_on_a_training_round_is_a_409(client, banks, evaluation):
    candidate = evaluation.candidate_round
    response = client.post(
        f"/api/v1/rounds/{candidate.number}/verdicts",
        data=json.dumps({"verdict": verdict(evaluation, "alpha").to_dict(), "signature": "x"}),
        content_type="application/json",
        **banks["alpha"].auth(),
    )
    assert response.status_code == 409
    assert "is a training round; verdicts go to evaluation rounds" in _message(response)


def test_a_verdict_on_an_unpublished_evaluation_round_is_a_409(client, banks, gated):
    publish(_next())
    evaluation = _next()
    evaluation.aggregate_digest = "e1" * 32  # what a node might guess; not yet published
    response = post_verdict(client, banks["alpha"], evaluation)
    assert response.status_code == 409
    assert "verdicts are accepted once it is published" in _message(response)


def test_a_verdict_on_a_round_that_does_not_exist_is_a_404(client, banks, evaluation):
    evaluation.number = 99
    assert post_verdict(client, banks["alpha"], evaluation).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"verdict": {"decision": "adopt"}, "signature": "x"},
        {"verdict": "adopt", "signature": "x"},
        {"signature": "x"},
        [],
    ],
)
def test_a_malformed_body_is_a_400_with_a_message(client, banks, evaluation, body):
    response = client.post(
        f"/api/v1/rounds/{evaluation.number}/verdicts",
        data=json.dumps(body),
        content_type="application/json",
        **banks["alpha"].auth(),
    )
    assert response.status_code == 400
    assert _message(response)


@pytest.mark.parametrize("value", [1.5, -0.1, "0.5", None])
def test_a_verdict_with_a_figure_out_of_range_is_a_400(client, banks, evaluation, value):
    body = {**verdict(evaluation, "alpha").to_dict(), "candidate_auprc": value}
    response = client.post(
        f"/api/v1/rounds/{evaluation.number}/verdicts",
        data=json.dumps({"verdict": body, "signature": "x"}),
        content_type="application/json",
        **banks["alpha"].auth(),
    )
    assert response.status_code == 400
    assert "verdict.candidate_auprc must be" in _message(response)


def test_only_banks_post_verdicts(client, banks, evaluation, operator):
    response = client.post(
        f"/api/v1/rounds/{evaluation.number}/verdicts",
        data=json.dumps({"verdict": verdict(evaluation, "alpha").to_dict(), "signature": "x"}),
        content_type="application/json",
        **basic("olivia", OPERATOR_PASSWORD),
    )
    assert response.status_code == 403


def test_everyone_reads_the_verdicts_and_the_derived_decision(client, banks, evaluation):
    all_agree(client, banks, evaluation, "reject")
    shown = client.get(f"/api/v1/rounds/{evaluation.number}/verdicts", **banks["delta"].auth())
    assert shown.status_code == 200
    data = shown.json()
    assert data["decision"] == "reject" and data["threshold"] == 3
    assert data["candidate_round"] == evaluation.candidate_round.number
    assert [v["bank"] for v in data["verdicts"]] == ["alpha", "beta", "gamma"]
    assert all(v["counted"] and v["signature"] for v in data["verdicts"])


def test_a_stored_row_with_a_bad_signature_is_shown_as_not_counted(client, banks, evaluation):
    GateVerdict.objects.create(
        round=evaluation,
        bank=banks["alpha"].persona.bank,
        verdict=verdict(evaluation, "alpha").to_dict(),
        signature="A" * 88,
    )
    data = client.get(
        f"/api/v1/rounds/{evaluation.number}/verdicts", **banks["delta"].auth()
    ).json()
    assert data["decision"] is None
    assert data["verdicts"][0]["counted"] is False
    assert "does not verify" in data["verdicts"][0]["ignored"]


def test_reading_the_verdicts_of_a_training_round_is_a_409(client, banks, evaluation):
    number = evaluation.candidate_round.number
    response = client.get(f"/api/v1/rounds/{number}/verdicts", **banks["delta"].auth())
    assert response.status_code == 409


def test_the_round_answers_carry_the_gate_and_parse_as_round_info(client, banks, evaluation):
    all_agree(client, banks, evaluation, "adopt")
    candidate = evaluation.candidate_round
    detail = client.get(f"/api/v1/rounds/{candidate.number}", **banks["delta"].auth()).json()
    info = RoundInfo.from_dict(detail)
    assert (info.gate_round, info.gate_decision) == (evaluation.number, "adopt")
    listed = client.get("/api/v1/rounds/", **banks["delta"].auth()).json()["results"]
    by_number = {r["number"]: RoundInfo.from_dict(r) for r in listed}
    assert by_number[candidate.number].gate_decision == "adopt"
    assert by_number[evaluation.number].candidate_round == candidate.number
    assert by_number[evaluation.number].is_evaluation
    assert by_number[evaluation.number].gate_round is None


def test_the_openapi_schema_documents_the_verdicts_endpoint(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    path = schema["paths"]["/api/v1/rounds/{number}/verdicts"]
    assert set(path) >= {"get", "post"}
    assert {"201", "200"} <= set(path["post"]["responses"])


@pytest.mark.parametrize("number", [0, 2**31, 10**20])
def test_a_round_number_out_of_range_is_a_404_not_a_500(client, banks, evaluation, number):
    body = {"verdict": verdict(evaluation, "alpha").to_dict(), "signature": "x"}
    for response in (
        client.get(f"/api/v1/rounds/{number}/verdicts", **banks["alpha"].auth()),
        client.post(
            f"/api/v1/rounds/{number}/verdicts",
            data=json.dumps(body),
            content_type="application/json",
            **banks["alpha"].auth(),
        ),
    ):
        assert response.status_code == 404, response.content

"""JSON nested past any sane depth is a 400 with a message on every endpoint that reads JSON."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.test import Client

from consortium.api.parsers import (
    MAX_JSON_DEPTH,
    JSONTooComplex,
    bounded_json_loads,
    json_shape_check,
)
from consortium.members.models import Bank
from consortium.rounds.models import MetricReport, RoundPolicy, RoundState
from tests.portal.test_portal_pages import _policy_post

pytestmark = pytest.mark.django_db

BOMB = "[" * 10_000 + "]" * 10_000


def _basic() -> dict[str, Any]:
    token = base64.b64encode(b"olivia:operator-password-1").decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def test_ten_thousand_nested_brackets_in_a_metrics_report_are_a_400_with_a_message(
    client: Client, open_round, bank_alpha
):
    type(open_round).objects.filter(pk=open_round.pk).update(state=RoundState.PUBLISHED)
    response = client.post(
        f"/api/v1/rounds/{open_round.number}/metrics",
        data=BOMB,
        content_type="application/json",
        **bank_alpha.auth(),
    )
    assert response.status_code == 400
    assert response.json() == {
        "message": f"JSON nested more than {MAX_JSON_DEPTH} levels deep",
        "extra": {},
    }
    assert not MetricReport.objects.filter(round=open_round).exists()


def test_ten_thousand_nested_brackets_in_a_bank_create_are_a_400(client: Client, operator):
    response = client.post("/api/v1/banks/", data=BOMB, content_type="application/json", **_basic())
    assert response.status_code == 400
    assert "nested more than" in response.json()["message"]
    assert not Bank.objects.exists()


def test_a_depth_bomb_inside_a_policys_model_spec_over_the_api_is_a_400(client: Client, operator):
    body = '{"name": "deep", "model_spec": {"kind": "mlp", "hidden": ' + BOMB + "}}"
    response = client.post(
        "/api/v1/policies/", data=body, content_type="application/json", **_basic()
    )
    assert response.status_code == 400
    assert "nested more than" in response.json()["message"]
    assert not RoundPolicy.objects.filter(name="deep").exists()


def test_a_depth_bomb_posted_to_the_portals_policy_form_is_a_400_not_a_500(
    client: Client, operator, policy
):
    client.force_login(operator)
    # The portal's form has no JSON box any more: its one JSON value, the CKKS parameters,
    # is a choice checked against the key epochs' before anything is decoded, and a
    # model_spec field is not read at all (the spec is asked field by field).
    data = {**_policy_post(policy), "name": "deep", "model_spec": BOMB, "ckks_params": BOMB}
    response = client.post("/policies/new", data)
    assert response.status_code == 400
    assert "CKKS parameters: Choose the parameters of a registered key epoch" in (
        response.content.decode()
    )
    assert not RoundPolicy.objects.filter(name="deep").exists()


def test_an_ordinary_body_still_parses(client: Client, operator):
    response = client.post(
        "/api/v1/policies/",
        data={"name": "plain", "min_banks": 3, "model_spec": {"kind": "mlp", "hidden": [[8]]}},
        content_type="application/json",
        **_basic(),
    )
    # Not a parse error: the service explains what is wrong with the model_spec instead.
    assert "nested" not in response.json().get("message", "")


@pytest.mark.parametrize(
    "text",
    [
        '"' + "[" * 100 + '"',  # brackets inside a string do not count
        '{"a": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',  # nor after an escaped quote
        "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH,
    ],
)
def test_the_shape_check_lets_strings_and_the_limit_itself_through(text: str):
    json_shape_check(text)
    bounded_json_loads(text)


def test_the_shape_check_counts_elements(monkeypatch):
    with pytest.raises(JSONTooComplex, match="more than 3 elements"):
        json_shape_check("[1,2,3,4,5]", max_elements=3)
    with pytest.raises(JSONTooComplex, match="nested more than"):
        bounded_json_loads(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))

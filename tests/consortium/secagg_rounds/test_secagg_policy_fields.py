"""The policy's secure-aggregation settings are visible and settable where the others are."""

from __future__ import annotations

import pytest

from consortium.portal.forms import PolicyForm
from consortium.rounds.admin import RoundPolicyAdmin
from consortium.rounds.models import POLICY_FIELDS, RoundPolicy
from tests.consortium.secagg_rounds.conftest import MODEL

pytestmark = pytest.mark.django_db


def test_the_operator_fields_include_the_secure_aggregation_settings():
    assert {"secure_aggregation", "aggregate_checkers"} <= set(POLICY_FIELDS)
    assert {"secure_aggregation", "aggregate_checkers"} <= set(PolicyForm().fields)
    assert "secure_aggregation" in RoundPolicyAdmin.list_display


def test_the_policy_api_sets_and_shows_the_protocol_and_the_checkers(client, operator):
    client.force_login(operator)
    body = {"name": "chk", "model_spec": MODEL, "secure_aggregation": "v1", "aggregate_checkers": 2}
    response = client.post("/api/v1/policies/", body, content_type="application/json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["secure_aggregation"] == "v1" and data["aggregate_checkers"] == 2
    assert data["snapshot"]["secure_aggregation"] == "v1"
    assert RoundPolicy.objects.get(name="chk").aggregate_checkers == 2


def test_an_unknown_protocol_is_refused_with_a_reason(client, operator):
    client.force_login(operator)
    body = {"name": "bad", "model_spec": MODEL, "secure_aggregation": "v3"}
    response = client.post("/api/v1/policies/", body, content_type="application/json")
    assert response.status_code == 400
    assert "secure_aggregation" in response.json()["message"]
    assert not RoundPolicy.objects.filter(name="bad").exists()


def test_the_policy_page_shows_the_protocol(client, operator, masked_policy):
    client.force_login(operator)
    page = client.get(f"/policies/{masked_policy.pk}/").content.decode()
    assert "Secure aggregation" in page and "every node" in page

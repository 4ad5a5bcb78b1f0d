"""The policy's feature set at the portal: it fixes n_features, and a mismatch is a 400."""

from __future__ import annotations

from typing import Any

import pytest

from consortium.rounds.models import RoundPolicy
from models.feature_sets import FEATURE_SETS
from tests.consortium.secagg_rounds.conftest import MODEL

pytestmark = pytest.mark.django_db


def _post(client: Any, **fields: Any) -> Any:
    body = {"name": "formats", "model_spec": MODEL, **fields}
    return client.post("/api/v1/policies/", body, content_type="application/json")


@pytest.mark.parametrize("name", list(FEATURE_SETS))
def test_the_portal_derives_n_features_from_the_feature_set(client, operator, name):
    client.force_login(operator)
    response = _post(client, feature_set=name)
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["n_features"] == FEATURE_SETS[name].n_features
    assert data["snapshot"]["feature_set"] == name
    assert data["snapshot"]["n_features"] == FEATURE_SETS[name].n_features


def test_a_policy_without_a_feature_set_keeps_the_account_features(client, operator):
    client.force_login(operator)
    response = _post(client)
    assert response.status_code == 201, response.content
    assert response.json()["feature_set"] == "aml-v1"
    assert response.json()["n_features"] == FEATURE_SETS["aml-v1"].n_features


def test_a_matching_n_features_is_accepted(client, operator):
    client.force_login(operator)
    response = _post(client, feature_set="card-v1", n_features=31)
    assert response.status_code == 201, response.content


def test_an_n_features_that_does_not_match_the_feature_set_is_a_400_naming_it(client, operator):
    client.force_login(operator)
    response = _post(client, feature_set="card-v1", n_features=44)
    assert response.status_code == 400
    body = response.json()
    assert body["message"].startswith("n_features:")
    assert "'card-v1' computes 31 features, not 44" in body["message"]
    assert not RoundPolicy.objects.filter(name="formats").exists()


def test_an_unknown_feature_set_is_a_400_naming_the_field(client, operator):
    client.force_login(operator)
    response = _post(client, feature_set="swift-v9")
    assert response.status_code == 400
    assert "feature_set" in response.json()["message"]
    assert not RoundPolicy.objects.filter(name="formats").exists()

"""Bounded influence at the portal: set through the API and a policy file, refused with reasons,
shown in words."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.management.base import CommandError

from consortium.rounds.models import RoundPolicy
from tests.consortium.secagg_rounds.conftest import MODEL
from tests.consortium.test_operator_cli import _policy_file, run

pytestmark = pytest.mark.django_db


def _post(client: Any, **fields: Any) -> Any:
    body = {"name": "bounded", "model_spec": MODEL, **fields}
    return client.post("/api/v1/policies/", body, content_type="application/json")


def test_the_policy_api_sets_the_share_cap_and_the_clip_norm_into_the_snapshot(client, operator):
    client.force_login(operator)
    response = _post(client, max_bank_share=0.5, update_clip_norm=6)
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["max_bank_share"], data["update_clip_norm"]) == (0.5, 6.0)
    assert data["snapshot"]["max_bank_share"] == 0.5
    assert data["snapshot"]["update_clip_norm"] == 6.0


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (
            {"max_bank_share": 1.5},
            "max_bank_share must be a share of the consortium's rows in (0, 1]",
        ),
        (
            {"max_bank_share": 0},
            "max_bank_share must be a share of the consortium's rows in (0, 1]",
        ),
        ({"update_clip_norm": 0}, "update_clip_norm must be a positive L2 distance"),
        ({"update_clip_norm": -2.0}, "update_clip_norm must be a positive L2 distance"),
        (
            {"max_bank_share": 0.5, "normalize_features": False},
            "max_bank_share: needs normalize_features",
        ),
    ],
    ids=["share-above-one", "share-zero", "clip-zero", "clip-negative", "share-without-stats"],
)
def test_the_policy_api_refuses_a_bad_bound_with_a_reason(client, operator, fields, words):
    client.force_login(operator)
    response = _post(client, **fields)
    assert response.status_code == 400
    assert words in response.json()["message"]
    assert not RoundPolicy.objects.filter(name="bounded").exists()


def test_policy_create_reads_the_bounds_from_a_policy_file(tmp_path):
    body = 'name = "fraud"\nmax_bank_share = 0.5\nupdate_clip_norm = 6.0\n'
    run("policy_create", "--file", str(_policy_file(tmp_path, body)))
    policy = RoundPolicy.objects.get(name="fraud")
    assert (policy.max_bank_share, policy.update_clip_norm) == (0.5, 6.0)


def test_policy_create_names_the_line_of_a_bound_it_refuses(tmp_path):
    body = 'name = "fraud"\nnormalize_features = false\nmax_bank_share = 0.5\n'
    with pytest.raises(CommandError, match=r"needs normalize_features.*line 3"):
        run("policy_create", "--file", str(_policy_file(tmp_path, body)))


def test_the_policy_page_says_the_bounds_in_words(client, operator):
    client.force_login(operator)
    bounded = _post(client, max_bank_share=0.5, update_clip_norm=6.0).json()
    page = client.get(f"/policies/{bounded['id']}/").content.decode()
    assert "each bank weighs at most 50% of the consortium's rows" in page
    assert "clips its step to an L2 distance of 6.0 from the round's base" in page
    plain = _post(client, name="plain").json()
    page = client.get(f"/policies/{plain['id']}/").content.decode()
    assert "off: updates weigh by their rows, unclipped" in page


def test_a_training_rounds_page_says_the_bounds_it_ran_under(client, operator, open_round):
    client.force_login(operator)
    page = client.get(f"/rounds/{open_round.number}/").content.decode()
    assert "Bounded influence" in page
    assert "off: updates weigh by their rows, unclipped" in page

"""The policy pages of a consortium with 200 banks and 1,000 rounds under one version: a
fixed number of queries each (the rounds a version ran are paged, never looped over)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.portal.conftest import seed_history

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(policy: Any, epoch: Any) -> Any:
    seed_history(banks=200, rounds=1000, per_round=5, policy=policy, epoch=epoch)
    return policy


def test_the_policy_pages_need_a_fixed_number_of_queries_at_scale(
    history, operator, client_for, django_assert_max_num_queries, subtests
):
    client = client_for(operator)
    pk = history.pk
    # url -> (most queries allowed, a text the page must show); the counts on this history
    # plus one or two of slack: a loop over 1,000 rounds would add hundreds.
    pages = {
        f"/policies/{pk}/": (12, 'href="/rounds/1000/"'),
        f"/policies/{pk}/?page=40": (12, 'href="/rounds/1/"'),
        f"/policies/{pk}/new-version": (7, "Hidden layer widths"),
        f"/policies/compare?a={pk}&b={pk}": (6, "No setting differs."),
    }
    for url, (limit, expected) in pages.items():
        with subtests.test(url=url):
            with django_assert_max_num_queries(limit):
                response = client.get(url)
            assert response.status_code == 200
            assert expected in response.content.decode()

"""Pages stay fast with 200 banks and 1,000 rounds of history: a fixed number of queries each.

The query count of a page must not grow with the rows it lists (no N+1). Each bound below
is the page's count on this history plus a little slack; a loop over rows would add
hundreds.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.portal.conftest import seed_history

pytestmark = pytest.mark.django_db

BANKS, ROUNDS, PER_ROUND = 200, 1000, 5

# url -> (most queries allowed, a text the page must show). Every staff page also asks for
# the halt banner (one query); the overview and bank list for the ε budget, and the pages
# with an ε plot for the signed figures (selectors_epsilon): fixed costs, never per row.
PAGES: dict[str, tuple[int, str]] = {
    "/": (18, "bank-000"),
    "/?page=4": (18, "bank-199"),
    "/rounds/": (12, "1000"),
    "/rounds/?page=20": (12, "Failed"),
    "/rounds/?state=failed": (12, "Failed"),
    "/rounds/1000/": (13, "Round 1000"),
    "/rounds/500/": (13, "Round 500"),
    "/rounds/progress": (7, "No round is in flight"),
    "/banks/": (9, "bank-049"),
    "/banks/?page=4": (9, "bank-199"),
    "/banks/?q=bank-1&status=active": (9, "bank-149"),
    "/banks/bank-007/": (20, "Participation history"),
    "/banks/bank-007/?page=3": (20, "Participation history"),
    "/policies/": (7, "default"),
    "/audit/": (9, "Audit trail"),
    "/audit/?action=bank.created&page=2": (9, "Audit trail"),
}


@pytest.fixture
def history(policy: Any, epoch: Any) -> None:
    seed_history(
        banks=BANKS, rounds=ROUNDS, per_round=PER_ROUND, policy=policy, epoch=epoch, epsilon=True
    )


def test_every_page_of_a_large_consortium_needs_a_fixed_number_of_queries(
    history, operator, client_for, django_assert_max_num_queries, subtests, django_user_model
):
    # One test seeds the history once (a few seconds); each page is its own subtest.
    client = client_for(operator)
    for url, (limit, expected) in PAGES.items():
        with subtests.test(url=url):
            # The query count is the guard (no timings in unit tests: a loaded machine
            # would fail them, and a loop over the history shows as hundreds of queries).
            with django_assert_max_num_queries(limit):
                response = client.get(url)
            assert response.status_code == 200
            assert expected in response.content.decode()
    with subtests.test(url="/banks/bank-010/ as its representative"):
        from consortium.members.models import Bank
        from consortium.portal.models import BankRepresentative

        rep = django_user_model.objects.create_user("rep", password="x")
        BankRepresentative.objects.create(user=rep, bank=Bank.objects.get(slug="bank-010"))
        rep_client = client_for(rep)
        # +1 for the model version the bank serves (opt-in, docs/model-registry.md).
        with django_assert_max_num_queries(18):
            response = rep_client.get("/banks/bank-010/?page=2")
        assert response.status_code == 200
        assert "bank-011" not in response.content.decode()

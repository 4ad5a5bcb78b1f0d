"""Pages stay fast with 200 banks and 1,000 rounds of history: a fixed number of queries each.

The query count of a page must not grow with the rows it lists (no N+1). Each bound below
is the page's count on this history plus a little slack; a loop over rows would add
hundreds. Round 999 is crowded (185 uploads, reports and manifest inputs) and round 1001
is in flight with 180 banks in and 20 missing, as in a 200-bank consortium.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from consortium.members.models import Bank, BankStatus
from consortium.portal.models import BankRepresentative
from consortium.rounds.models import Round
from tests.portal.conftest import (
    key_epoch_row,
    policy_row,
    round_in_flight_row,
    seed_crowded_rounds,
    seed_history,
)

pytestmark = pytest.mark.django_db

BANKS, ROUNDS, PER_ROUND, CROWD = 200, 1000, 5, 180
BUDGET = 120.0  # ε signed is 0.1 x the round number: the banks of the last rounds are near it

# url -> (most queries allowed, a text the page must show). Every staff page also asks for
# the halt banner (one query); the overview and bank list for the ε budget, and the pages
# with an ε plot for the signed figures (selectors_epsilon): fixed costs, never per row.
PAGES: dict[str, tuple[int, str]] = {
    "/": (20, "Banks needing attention"),
    "/?page=4": (20, "bank-199"),
    "/rounds/": (12, "1000"),
    "/rounds/?page=20": (12, "Failed"),
    "/rounds/?state=failed": (12, "Failed"),
    "/rounds/?from=100&to=900": (12, "rounds 101\u2013899"),
    "/rounds/?banks=bank-001,bank-002": (13, 'data-series="bank-002"'),
    "/rounds/1000/": (13, "Round 1000"),
    "/rounds/500/": (13, "Round 500"),
    "/rounds/999/": (13, "185 updates"),
    "/rounds/999/?page=4": (13, "Page 4 of 4"),
    "/rounds/999/?q=bank-01&sort=-received": (13, "10 of 185 updates match"),
    "/rounds/999/?flag=bad-signature&status=active&page=2": (13, "Page 2 of 4"),
    "/rounds/999/?rpage=2&rsort=-auprc": (13, "Page 2 of 4"),
    "/rounds/999/?from=1&to=999&banks=bank-003": (14, 'data-series="bank-003"'),
    "/rounds/999/manifest.json": (5, '"bank-179"'),
    "/rounds/1001/": (15, "Missing (20)"),
    "/rounds/progress": (7, "Missing (20)"),
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
def history(db: Any) -> None:
    # Rows only, no services: building a policy through them imports torch (seconds).
    policy, epoch = policy_row(dp_target_epsilon=BUDGET), key_epoch_row()
    banks, rounds = seed_history(
        banks=BANKS, rounds=ROUNDS, per_round=PER_ROUND, policy=policy, epoch=epoch, epsilon=True
    )
    in_flight = round_in_flight_row(policy, epoch, ROUNDS + 1)
    seed_crowded_rounds(published=rounds[998], open_round=in_flight, banks=banks, took_part=CROWD)
    Bank.objects.filter(slug="bank-007").update(status=BankStatus.SUSPENDED)


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
    # What the crowded pages show, on the same history (seeding it again would cost seconds).
    for check in CHECKS:
        with subtests.test(check=check.__name__):
            check(client)
    with subtests.test(url="/banks/bank-010/ as its representative"):
        rep = django_user_model.objects.create_user("rep", password="x")
        BankRepresentative.objects.create(user=rep, bank=Bank.objects.get(slug="bank-010"))
        rep_client = client_for(rep)
        # +1 for the model version the bank serves (opt-in, docs/model-registry.md).
        with django_assert_max_num_queries(18):
            response = rep_client.get("/banks/bank-010/?page=2")
        assert response.status_code == 200
        assert "bank-011" not in response.content.decode()


def _rows(html: str, testid: str) -> list[str]:
    table = re.search(rf'data-testid="{testid}".*?</table>', html, re.S)
    assert table is not None, testid
    return re.findall(r"<tr[ >].*?</tr>", table.group(0).split("<tbody>")[1], re.S)


def crowded_round_page_lists_fifty_updates_a_page_and_the_whole_manifest(client: Any) -> None:
    html = client.get("/rounds/999/").content.decode()
    assert len(_rows(html, "submissions")) == 50
    assert len(_rows(html, "reports")) == 50
    assert len(_rows(html, "manifest")) == 185  # searchable in the page, every input listed
    assert "all 185 verify" not in html and "some do not verify" in html  # "c2ln" is no signature
    last = client.get("/rounds/999/?page=4").content.decode()
    assert len(_rows(last, "submissions")) == 35


def a_filter_is_kept_by_the_page_links_and_narrows_both_tables(client: Any) -> None:
    html = client.get("/rounds/999/?q=bank-1&sort=-received").content.decode()
    banks = re.findall(r'title="Bank (\d{3})">bank-\d{3}</a>', " ".join(_rows(html, "submissions")))
    assert banks and all(b.startswith("1") for b in banks)
    assert 'href="?q=bank-1&amp;sort=-received&amp;page=2"' in html
    reports = " ".join(_rows(html, "reports"))
    assert "bank-1" in reports and "bank-0" not in reports


def the_raw_manifest_downloads_as_the_json_the_scheduler_wrote(client: Any) -> None:
    response = client.get("/rounds/999/manifest.json")
    assert response["Content-Disposition"] == 'attachment; filename="round-999-manifest.json"'
    manifest = json.loads(response.content)
    assert manifest == Round.objects.get(number=999).manifest
    assert len(manifest["inputs"]) == 185


def the_overview_lists_the_banks_needing_attention_with_their_reasons(client: Any) -> None:
    html = client.get("/?page=1").content.decode()
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r'<tr data-bank="([\w-]+)">.*?</tr>', html, re.S)
    }
    assert "suspended" in rows["bank-007"]
    assert "privacy budget nearly spent: ε 100.10 of 120" in rows["bank-001"]
    last = client.get("/?page=4").content.decode()
    assert "sat out the last 3 rounds" in last  # banks 180 to 189 were in none of 998 to 1000
    assert "bank-185" in last
    assert "Missing (20)" in html and 'href="/banks/bank-199/"' in html  # every one, linked


CHECKS = [
    crowded_round_page_lists_fifty_updates_a_page_and_the_whole_manifest,
    a_filter_is_kept_by_the_page_links_and_narrows_both_tables,
    the_raw_manifest_downloads_as_the_json_the_scheduler_wrote,
    the_overview_lists_the_banks_needing_attention_with_their_reasons,
]

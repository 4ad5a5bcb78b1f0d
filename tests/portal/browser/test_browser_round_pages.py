"""The round and overview pages of a crowded consortium in a real browser: filtering and
paging the uploads, searching the manifest and the missing banks, choosing a chart window.

120 banks and 60 rounds of rows (bulk inserts, no services): round 59 has 110 uploads,
reports and manifest inputs; round 61 is in flight with 110 banks in and 10 missing.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.portal.conftest import (
    key_epoch_row,
    policy_row,
    round_in_flight_row,
    seed_crowded_rounds,
    seed_history,
)

pytestmark = pytest.mark.browser

OPERATOR = ("olivia", "operator-password-1")
BANKS, ROUNDS, CROWD = 120, 60, 110


@pytest.fixture
def crowded(operator: Any) -> None:
    policy, epoch = policy_row(dp_target_epsilon=7.0), key_epoch_row()
    banks, rounds = seed_history(
        banks=BANKS, rounds=ROUNDS, per_round=5, policy=policy, epoch=epoch, epsilon=True
    )
    in_flight = round_in_flight_row(policy, epoch, ROUNDS + 1)
    seed_crowded_rounds(published=rounds[58], open_round=in_flight, banks=banks, took_part=CROWD)


def test_an_operator_filters_and_pages_the_uploads_of_a_crowded_round(
    page, live_server, sign_in, crowded, shot
):
    sign_in(*OPERATOR)
    page.goto(f"{live_server.url}/rounds/59/")
    rows = page.get_by_test_id("submissions").locator("tbody tr")
    expect(rows).to_have_count(50)
    expect(page.get_by_test_id("pager-page")).to_contain_text("Page 1 of 3 · 110 updates")
    shot("round-detail-crowded", publish=True)
    page.get_by_test_id("pager-page").get_by_role("link", name="Next \u203a").click()
    expect(page.get_by_test_id("pager-page")).to_contain_text("Page 2 of 3")
    # A new filter starts at the first page; the page links keep the filter.
    page.get_by_label("Flag").select_option("bad-signature")  # "c2ln" is no signature
    page.get_by_label("Order").first.select_option("-received")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("submission-matches")).to_have_text("110 of 110 updates match")
    expect(page.get_by_test_id("pager-page")).to_contain_text("Page 1 of 3")
    page.get_by_test_id("pager-page").get_by_role("link", name="Last »").click()
    expect(rows).to_have_count(10)
    assert "flag=bad-signature" in page.url and "sort=-received" in page.url
    page.get_by_label("Bank", exact=True).fill("bank-01")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("submission-matches")).to_have_text("10 of 110 updates match")
    expect(rows.first).to_contain_text("bank-019")  # last received first
    expect(page.get_by_test_id("reports").locator("tbody tr")).to_have_count(10)


def test_an_operator_searches_the_manifest_and_downloads_it(page, live_server, sign_in, crowded):
    sign_in(*OPERATOR)
    page.goto(f"{live_server.url}/rounds/59/")
    inputs = page.get_by_test_id("manifest").locator("tbody tr")
    expect(inputs).to_have_count(110)
    page.get_by_label("Search the manifest").fill("bank-10")
    expect(inputs.locator("visible=true")).to_have_count(10)
    expect(inputs.locator("visible=true").first).to_contain_text("bank-100")
    page.get_by_label("Search the manifest").fill("no such bank")
    expect(page.get_by_text("No input matches.")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_test_id("manifest-download").click()
    assert download.value.suggested_filename == "round-59-manifest.json"


def test_an_operator_chooses_the_rounds_and_banks_the_convergence_chart_draws(
    page, live_server, sign_in, crowded
):
    sign_in(*OPERATOR)
    page.goto(f"{live_server.url}/rounds/")
    auprc = page.get_by_test_id("convergence").locator("svg.chart").first
    expect(auprc.locator("g.band")).to_have_count(1)  # 120 banks: a band, not 120 lines
    expect(auprc.locator("g.series")).to_have_count(1)  # and the consortium mean
    page.get_by_label("From round").fill("11")
    page.get_by_label("To round").fill("29")
    page.get_by_label("Banks to draw").fill("bank-003,bank-004")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_test_id("chart-window")).to_have_text("rounds 11\u201329")
    expect(auprc.locator('g[data-series="bank-003"]')).to_have_count(1)
    expect(auprc.locator('g[data-series="bank-004"]')).to_have_count(1)
    page.get_by_label("Banks to draw").fill("nowhere")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_test_id("bad-query")).to_have_text("?banks= names no bank called nowhere")


def test_the_overview_lists_every_missing_bank_and_the_banks_needing_attention(
    page, live_server, sign_in, crowded, shot
):
    sign_in(*OPERATOR)
    missing = page.get_by_test_id("missing").locator("li")
    expect(page.get_by_role("heading", name="Missing (10)")).to_be_visible()
    expect(missing).to_have_count(10)
    page.get_by_label("Search the missing banks").fill("bank-115")
    expect(missing.locator("visible=true")).to_have_text(["bank-115"])
    expect(page.get_by_test_id("banks")).to_contain_text("privacy budget nearly spent")
    shot("overview-crowded", publish=True)
    page.get_by_test_id("missing").get_by_role("link", name="bank-115").click()
    expect(page.get_by_role("heading", name="Bank 115")).to_be_visible()

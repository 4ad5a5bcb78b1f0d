"""Signing in as each role in a real browser, and what each one may see."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.portal.conftest import REP_PASSWORD

pytestmark = pytest.mark.browser


def test_an_operator_signs_in_and_sees_the_overview(
    page, live_server, sign_in, operator, bank_alpha, shot
):
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(f"{live_server.url}/login/?next=/")
    sign_in("olivia", "operator-password-1")
    expect(page.get_by_role("heading", name="Consortium overview")).to_be_visible()
    expect(page.get_by_test_id("role")).to_have_text("operator")
    # The overview lists the banks needing attention (alpha needs none); every bank is a
    # click away.
    expect(page.get_by_test_id("banks")).to_contain_text("No bank needs attention")
    expect(page.get_by_role("link", name="Onboard a bank")).to_be_visible()
    shot("signin-operator")
    page.get_by_role("link", name="every bank, search and filter").click()
    expect(page.get_by_test_id("banks")).to_contain_text("alpha")


def test_an_auditor_reads_but_is_offered_no_action(
    page, live_server, sign_in, auditor, bank_alpha, policy
):
    sign_in("audrey", "auditor-password-1")
    expect(page.get_by_test_id("role")).to_have_text("auditor (read-only)")
    expect(page.get_by_role("link", name="Onboard a bank")).to_have_count(0)
    page.get_by_role("link", name="Policies", exact=True).click()
    page.get_by_role("link", name="default v1").click()
    expect(page.get_by_role("heading", name="Policy default v1")).to_be_visible()
    expect(page.get_by_role("link", name="New version from this one")).to_have_count(0)
    page.goto(f"{live_server.url}/banks/new")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


def test_a_representative_lands_on_their_bank_and_sees_no_other(
    page, live_server, sign_in, bank_rep, bank_beta, shot
):
    sign_in("ravi", REP_PASSWORD)
    expect(page).to_have_url(f"{live_server.url}/banks/alpha/")
    expect(page.get_by_test_id("role")).to_have_text("representative of alpha")
    expect(page.get_by_role("navigation", name="main")).to_have_text("My bank Policies Roster")
    expect(page.get_by_test_id("onboarding")).to_contain_text("Signing key registered")
    shot("signin-representative")
    page.goto(f"{live_server.url}/banks/beta/")
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    page.goto(f"{live_server.url}/rounds/")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


def test_a_wrong_password_is_refused_and_an_account_without_a_role_sees_nothing(
    page, live_server, sign_in, roleless
):
    sign_in("nora", "wrong")
    expect(page.get_by_role("alert")).to_contain_text("did not match")
    sign_in("nora", "no-role-password-1")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()

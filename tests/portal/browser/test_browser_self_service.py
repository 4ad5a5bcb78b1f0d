"""Operator self-service in a real browser: an account set up through its link, a bank
suspended after a confirmation page, and the evidence pack downloaded from the trail."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from playwright.sync_api import expect

from consortium.members.models import Bank, BankStatus

pytestmark = pytest.mark.browser

OPERATOR = ("olivia", "operator-password-1")
AUDITOR = ("audrey", "auditor-password-1")
NEW_PASSWORD = "a-long-enough-passphrase-7"


def test_an_operator_creates_an_auditor_who_sets_a_password_through_the_link(
    page, live_server, sign_in, operator, shot
):
    sign_in(*OPERATOR)
    page.get_by_role("link", name="Accounts", exact=True).click()
    page.get_by_label("Username").fill("axel")
    page.get_by_label("Auditor (reads the whole trail, changes nothing)").check()
    page.get_by_role("button", name="Create the account").click()
    expect(page.get_by_role("heading", name="axel has an account")).to_be_visible()
    link = page.get_by_test_id("setup-link").inner_text()
    shot("flow-account-setup-link")
    page.get_by_role("button", name="Sign out").click()
    page.goto(link)
    expect(page.get_by_role("heading", name="Choose your password")).to_be_visible()
    page.locator("input[name=new_password1]").fill(NEW_PASSWORD)
    page.locator("input[name=new_password2]").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set my password").click()
    expect(page.get_by_text("Your password is set. Sign in with it.")).to_be_visible()
    sign_in("axel", NEW_PASSWORD)
    expect(page.get_by_test_id("role")).to_have_text("auditor (read-only)")
    page.goto(link)  # used once: it no longer works
    expect(page.get_by_test_id("setup-invalid")).to_be_visible()


def test_suspending_a_bank_needs_a_reason_and_a_confirmation(
    page, live_server, sign_in, operator, bank_alpha, shot
):
    sign_in(*OPERATOR)
    page.goto(f"{live_server.url}/banks/alpha/")
    form = page.get_by_test_id("status-form")
    expect(form.get_by_label("Action")).to_have_value("")
    form.get_by_label("Action").select_option("suspend")
    form.get_by_role("button", name="Apply…").click()
    # The browser's own check stops an empty reason before it is sent.
    assert Bank.objects.get(slug="alpha").status == BankStatus.ACTIVE
    page.get_by_test_id("status-form").get_by_label("Reason").fill("reports overdue")
    page.get_by_test_id("status-form").get_by_role("button", name="Apply…").click()
    expect(page.get_by_role("heading", name="Suspend alpha?")).to_be_visible()
    shot("flow-suspend-confirm")
    assert Bank.objects.get(slug="alpha").status == BankStatus.ACTIVE
    page.get_by_role("button", name="Yes, suspend alpha").click()
    expect(page.get_by_test_id("bank-status")).to_have_text("Suspended")


def test_an_auditor_downloads_the_evidence_pack_of_the_snapshot_the_page_shows(
    page, live_server, sign_in, auditor, bank_alpha, policy
):
    sign_in(*AUDITOR)
    page.get_by_role("link", name="Audit", exact=True).click()
    snapshot = page.get_by_test_id("snapshot").inner_text()
    link = page.get_by_test_id("exports").get_by_role("link", name="Evidence pack", exact=False)
    with page.expect_download() as download:
        link.click()
    with zipfile.ZipFile(io.BytesIO(open(download.value.path(), "rb").read())) as archive:
        names = sorted(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
    assert names == ["manifest.json", "report.csv", "report.json", "report.pdf"]
    assert f"#{manifest['snapshot']['seq']}:" in snapshot

"""Policy versions in a real browser: the structured form, its errors naming each field, the
confirmation with the changes and the round they apply from, the diff between versions.

``PORTAL_SCREENSHOTS_DIR=docs/screenshots`` refreshes the policy pages' pictures."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from consortium.rounds.models import RoundPolicy

pytestmark = pytest.mark.browser

OPERATOR = ("olivia", "operator-password-1")


def test_an_operator_edits_the_model_field_by_field_confirms_the_changes_and_reads_the_diff(
    page, live_server, sign_in, operator, open_round, shot
):
    policy = open_round.policy
    sign_in(*OPERATOR)
    page.goto(f"{live_server.url}/policies/{policy.pk}/new-version")
    expect(page.get_by_label("Hidden layer widths")).to_have_value("8")
    expect(page.locator("textarea")).to_have_count(0)  # no raw JSON box
    ckks = page.get_by_label("CKKS parameters")
    expect(ckks.locator("option:checked")).to_contain_text("Key epoch 1 (active): ring 4096")
    page.get_by_label("Hidden layer widths").fill("16, 8")
    page.get_by_label("Loss", exact=True).select_option("focal")
    page.get_by_label("Positive-class weight").fill("5")
    page.get_by_label("Minimum banks per aggregate").fill("4")
    shot("policy-form", publish=True)
    page.get_by_role("button", name="Create version 2").click()

    expect(page.get_by_role("heading", name="Save default v2?")).to_be_visible()
    diff = page.get_by_test_id("policy-diff").locator("li")
    expect(diff).to_have_text(
        [
            "Hidden layer widths 8 → 16, 8",
            "Loss bce → focal",
            "Positive-class weight default → 5",
            "Minimum banks 3 → 4",
        ]
    )
    n = open_round.number
    expect(page.get_by_test_id("policy-effective")).to_contain_text(
        f"It applies from round {n + 1}, the next round the scheduler opens; round {n}, in "
        "flight, finishes under default v1."
    )
    shot("policy-confirm", publish=True)
    assert RoundPolicy.objects.filter(name="default").count() == 1  # not saved yet

    page.get_by_role("button", name="Save version 2").click()
    expect(page.get_by_role("heading", name="Policy default v2")).to_be_visible()
    expect(page.get_by_test_id("policy-model")).to_have_text(
        "mlp; hidden layers 16, 8; seed 1; loss focal; positive weight 5"
    )
    expect(page.get_by_test_id("policy-effective")).to_contain_text(
        f"Applies from round {n + 1}, the next round the scheduler opens."
    )
    shot("policy-detail", publish=True)
    new = RoundPolicy.objects.get(name="default", version=2)
    assert new.model_spec == {
        "kind": "mlp",
        "hidden": [16, 8],
        "seed": 1,
        "loss": "focal",
        "pos_weight": 5,
    }

    page.get_by_test_id("changes-from-previous").click()
    expect(page.get_by_role("heading", name="Compare policy versions")).to_be_visible()
    expect(page.get_by_test_id("policy-diff").locator("li").last).to_have_text(
        "Minimum banks 3 → 4"
    )
    shot("policy-compare", publish=True)

    page.goto(f"{live_server.url}/policies/{policy.pk}/")
    rounds = page.get_by_test_id("policy-rounds")
    rounds.get_by_role("link", name=f"Round {n}").click()
    expect(page).to_have_url(f"{live_server.url}/rounds/{n}/")


def test_bad_values_in_the_structured_form_are_named_field_by_field(
    page, live_server, sign_in, operator, policy, shot
):
    sign_in(*OPERATOR)
    page.goto(f"{live_server.url}/policies/{policy.pk}/new-version")
    page.get_by_label("Hidden layer widths").fill("32, sixteen")
    page.get_by_label("Positive-class weight").fill("0")
    page.get_by_label("Initial-weights seed").fill("-1")
    page.get_by_role("button", name="Create version 2").click()
    errors = page.get_by_test_id("form-errors")
    expect(errors).to_contain_text("Hidden layer widths: Whole numbers separated by commas")
    expect(errors).to_contain_text("Positive-class weight: Must be above 0")
    expect(errors).to_contain_text("Initial-weights seed: A whole number from 0 to 2^63 - 1")
    shot("flow-policy-bad-values")
    page.get_by_label("Hidden layer widths").fill("32, 16")
    page.get_by_label("Positive-class weight").fill("")
    page.get_by_label("Initial-weights seed").fill("1")
    page.get_by_role("button", name="Create version 2").click()
    expect(page.get_by_test_id("policy-diff").locator("li")).to_have_text(
        ["Hidden layer widths 8 → 32, 16"]
    )
    page.get_by_role("button", name="Back to the form").click()
    expect(page.get_by_label("Hidden layer widths")).to_have_value("32, 16")
    assert RoundPolicy.objects.filter(name="default").count() == 1

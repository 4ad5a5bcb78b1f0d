"""The main pages of a consortium with some history, checked and photographed.

Run with ``PORTAL_SCREENSHOTS_DIR=docs/screenshots`` to refresh the pictures the README
links to::

    PORTAL_SCREENSHOTS_DIR=docs/screenshots .venv/bin/python -m pytest \
        tests/portal/browser/test_browser_screenshots.py
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import expect

from consortium.members.services import bank_create
from consortium.rounds.models import Round, RoundState
from consortium.rounds.selectors import round_in_flight
from consortium.rounds.services import policy_create, scheduler_tick
from he.signing import public_key_b64
from tests.conftest import Persona
from tests.portal.conftest import report, submit

pytestmark = pytest.mark.browser

# slug, name, AUPRC of the first federated model, what federation adds, ε per round
BANKS = [
    ("northbank", "Northbank plc", 0.34, 0.29, 0.42),
    ("harbour-trust", "Harbour Trust", 0.27, 0.33, 0.45),
    ("alpine-savings", "Alpine Savings", 0.41, 0.18, 0.40),
    ("meridian", "Meridian Bank", 0.22, 0.36, 0.48),
    ("coastal-credit", "Coastal Credit Union", 0.30, 0.25, 0.44),
]
PUBLISHED = 6


def _onboard() -> list[Persona]:
    people = []
    for slug, name, *_ in BANKS:
        key = Ed25519PrivateKey.generate()
        bank, credential = bank_create(
            slug=slug, name=name, actor="user:olivia", signing_public_key=public_key_b64(key)
        )
        people.append(Persona(bank, credential, key))
    return people


def _metrics(i: int, number: int) -> dict[str, float]:
    _, _, start, gain, eps = BANKS[i]
    wobble = 0.012 * math.sin(1.7 * number + i)
    auprc = start + gain * (1 - math.exp(-(number - 1) / 2.2)) + wobble
    return {
        "auprc": round(auprc, 4),
        "recall_at_1pct": round(min(0.95, auprc * 1.3), 4),
        "epsilon": round(eps * math.sqrt(number), 3),
    }


def build_history(ckks: Any) -> list[Persona]:
    """Six published rounds with metrics, a refused upload, a failed round, one in flight."""
    policy_create(
        name="fraud-mlp",
        actor="user:olivia",
        activate=True,
        min_banks=3,
        deadline=timedelta(minutes=30),
        max_rounds=12,
        normalize_features=False,
        model_spec={"kind": "mlp", "hidden": [32, 16], "seed": 7, "loss": "bce"},
        secure_aggregation="v1",  # hand-made v1 uploads, no roster behind these banks
    )
    people = _onboard()
    scheduler_tick()
    for _ in range(PUBLISHED):
        rnd = round_in_flight()
        assert rnd is not None
        if rnd.number == 3:  # Meridian's node signs with a stale key once, then retries
            assert submit(ckks, rnd, people[3], signer=people[0]).status_code == 403
        for i, persona in enumerate(people):
            assert submit(ckks, rnd, persona, seed=rnd.number * 10 + i).status_code == 201
        scheduler_tick()
        rnd.refresh_from_db()
        assert rnd.state == RoundState.PUBLISHED
        for i, persona in enumerate(people):
            report(rnd, persona, _metrics(i, rnd.number))
    failing = round_in_flight()  # two updates by the deadline, three required
    assert failing is not None
    for persona in people[:2]:
        submit(ckks, failing, persona, seed=99)
    scheduler_tick(failing.deadline_at + timedelta(seconds=1))
    current = round_in_flight()
    for i, persona in enumerate(people[:3]):
        submit(ckks, current, persona, seed=200 + i)
    return people


@pytest.fixture
def history(ckks: Any, epoch: Any, operator: Any) -> list[Persona]:
    return build_history(ckks)


def test_the_main_pages_of_a_consortium_with_history(
    page, live_server, sign_in, history, auditor, shot
):
    sign_in("olivia", "operator-password-1")
    expect(page.get_by_test_id("progress-count")).to_contain_text(
        "3 of 5 active banks have submitted"
    )
    expect(page.get_by_test_id("missing").locator("li")).to_have_text(
        ["coastal-credit", "meridian"]
    )
    failures = page.get_by_test_id("failures")
    expect(failures).to_contain_text("only 2 of the 3 required updates arrived by the deadline")
    rejected = page.get_by_test_id("rejected").get_by_role("row")
    expect(rejected.locator("td")).to_contain_text(
        ["bank:meridian", "round 3", "bad signature", ""]
    )
    expect(page.locator("svg.chart")).to_have_count(1)
    shot("overview", publish=True)

    page.get_by_role("link", name="Rounds", exact=True).click()
    expect(page.get_by_test_id("rounds")).to_contain_text("Failed")
    shot("rounds", publish=True)

    page.get_by_role("link", name=str(PUBLISHED), exact=True).click()
    expect(page.get_by_role("heading", name=f"Round {PUBLISHED}")).to_be_visible()
    expect(page.get_by_test_id("update-count")).to_have_text("5")
    chart = page.get_by_test_id("convergence").locator("svg.chart").first
    for slug, *_ in BANKS:
        expect(chart.locator(f'g[data-series="{slug}"]')).to_have_count(1)
    expect(chart.locator('g[data-series="consortium mean (self-reported)"] circle')).to_have_count(
        PUBLISHED
    )
    # No DP in this policy: no bank signed an ε with its uploads, so there is no ε plot,
    # whatever ε the metrics reports carry (one ε source: selectors_epsilon).
    expect(page.get_by_test_id("convergence")).not_to_contain_text("Privacy budget spent")
    shot("round-detail", publish=True)

    page.get_by_role("link", name="northbank").first.click()
    expect(page.get_by_test_id("submission-count")).to_have_text(str(PUBLISHED + 2))
    shot("bank", publish=True)

    page.get_by_role("button", name="Sign out").click()
    sign_in("audrey", "auditor-password-1")
    page.get_by_role("link", name="Audit", exact=True).click()
    expect(page.get_by_test_id("verification")).to_contain_text("intact", timeout=10_000)
    expect(page.get_by_test_id("events")).to_contain_text("update.accepted")
    shot("audit", publish=True, full_page=False)  # the first screenful
    page.get_by_label("Action").select_option("update.rejected")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("events").locator("tbody tr")).to_have_count(1)
    expect(page.get_by_test_id("events")).to_contain_text("bad signature")
    assert Round.objects.filter(state=RoundState.PUBLISHED).count() == PUBLISHED

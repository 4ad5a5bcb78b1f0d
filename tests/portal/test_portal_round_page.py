"""The round page's filters, chart window and manifest download, and the overview's list of
banks needing attention, on a small consortium through Django's test client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from consortium.members.models import Bank, BankStatus
from consortium.portal.selectors_convergence import BAND_LABEL, POINTS_MAX, thin_rounds
from consortium.rounds.models import MetricReport, Round, RoundState, Submission
from consortium.rounds.services import scheduler_tick
from tests.portal.conftest import report, submit
from tests.portal.test_portal_pages import text

pytestmark = pytest.mark.django_db


@pytest.fixture
def op(operator: Any, client_for: Any) -> Client:
    return client_for(operator)


@pytest.fixture
def published(ckks, open_round, bank_alpha, bank_beta, bank_gamma) -> Round:
    for i, persona in enumerate([bank_alpha, bank_beta, bank_gamma]):
        assert submit(ckks, open_round, persona, seed=i).status_code == 201
    scheduler_tick()
    open_round.refresh_from_db()
    assert open_round.state == RoundState.PUBLISHED
    report(open_round, bank_alpha, {"auprc": 0.41, "recall_at_1pct": 0.5})
    report(open_round, bank_beta, {"auprc": 0.37})
    return open_round


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=abc", "?from= must be a round number (1 or more), not abc"),
        ("to=0", "?to= must be a round number"),
        ("from=9&to=3", "?from=9 is after ?to=3: the window would be empty"),
        ("banks=nowhere", "?banks= names no bank called nowhere"),
        ("banks=" + ",".join(f"b{i}" for i in range(8)), "a chart draws at most 7"),
        ("flag=odd", "?flag=odd is not one of: bad-signature, not-in-manifest, rotated-key"),
        ("sort=size", "?sort=size is not one of"),
        ("status=gone", "?status=gone is not one of"),
    ],
)
def test_a_bad_query_on_the_round_page_is_a_400_that_says_what_is_wrong(
    op, published, query, message
):
    response = op.get(f"/rounds/{published.number}/?{query}")
    assert response.status_code == 400
    assert message in text(response)


def test_the_round_list_refuses_a_bad_chart_window_too(op, published):
    response = op.get("/rounds/?from=x")
    assert response.status_code == 400
    assert "?from= must be a round number" in text(response)


def test_the_filter_keeps_the_banks_it_names_in_both_tables(op, published):
    page = text(op.get(f"/rounds/{published.number}/?q=Beta"))
    assert "1 of 3 updates match" in page
    submissions = page.split("Submissions")[1].split("Objections")[0]
    assert "beta" in submissions and "alpha" not in submissions
    reports = page.split("Reported metrics")[1].split("Aggregate manifest")[0]
    assert "beta" in reports and "alpha" not in reports


def test_a_flag_keeps_only_the_uploads_it_describes(op, published):
    Submission.objects.filter(round=published, bank__slug="gamma").update(signature="AAAA")
    page = text(op.get(f"/rounds/{published.number}/?flag=bad-signature"))
    assert "1 of 3 updates match" in page
    assert "gamma" in page.split("Submissions")[1].split("Objections")[0]
    assert "No update matches this filter." in text(op.get(f"/rounds/{published.number}/?q=zz"))


def test_reports_read_as_words_and_sort_by_auprc(op, published):
    page = text(op.get(f"/rounds/{published.number}/?rsort=auprc"))
    reports = page.split("Reported metrics")[1]
    assert reports.index("beta") < reports.index("alpha")  # 0.37 before 0.41
    assert "recall at 1pct 0.5" in reports
    assert '{"recall_at_1pct"' not in op.get(f"/rounds/{published.number}/").content.decode()


def test_the_manifest_is_a_table_of_linked_banks_and_a_download(op, published):
    html = op.get(f"/rounds/{published.number}/").content.decode()
    manifest = html.split('data-testid="manifest"')[1].split("</table>")[0]
    for sub in Submission.objects.filter(round=published).select_related("bank"):
        assert f'href="/banks/{sub.bank.slug}/"' in manifest
        assert sub.digest in manifest
    assert manifest.count("verified") == 3
    response = op.get(f"/rounds/{published.number}/manifest.json")
    assert response.status_code == 200
    assert json.loads(response.content) == published.manifest


def test_a_round_without_a_manifest_has_no_download(op, open_round):
    assert op.get(f"/rounds/{open_round.number}/manifest.json").status_code == 404


def test_the_overview_lists_a_suspended_bank_and_not_the_others(op, published):
    Bank.objects.filter(slug="beta").update(status=BankStatus.SUSPENDED)
    page = text(op.get("/"))
    attention = page.split("Banks needing attention")[1]
    assert "beta Beta Suspended suspended: its node may not take part" in attention
    assert "alpha" not in attention.split("Listed:")[0]


def test_a_calm_consortium_has_nobody_needing_attention(op, published):
    assert "No bank needs attention" in text(op.get("/"))


def test_with_many_banks_the_chart_draws_a_band_and_only_the_banks_asked_for(op, published):
    extra = [Bank(slug=f"x{i}", name=f"X {i}", credential_prefix=f"x{i:011d}") for i in range(8)]
    Bank.objects.bulk_create(extra)
    MetricReport.objects.bulk_create(
        MetricReport(round=published, bank=b, metrics={"auprc": 0.1 * i})
        for i, b in enumerate(Bank.objects.filter(slug__startswith="x"))
    )
    html = op.get(f"/rounds/{published.number}/?banks=x3").content.decode()
    assert f'data-band="{BAND_LABEL}"' in html
    assert 'data-series="x3"' in html and 'data-series="x4"' not in html
    assert 'data-series="alpha"' not in html


def test_a_long_window_isthin_rounds_to_a_bounded_number_of_rounds():
    numbers = list(range(1000, 0, -1))
    thinned, step = thin_rounds(numbers)
    assert step == 3 and len(thinned) <= POINTS_MAX
    assert thinned[0] == 1000  # the newest round is always drawn
    assert thin_rounds(numbers[:50]) == (numbers[:50], 1)

"""The halt banner on every staff page, and one ε on every page: the figure each bank signed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from consortium.members.models import Bank, BankStatus
from consortium.metrics import DatabaseCollector
from consortium.portal.models import BankRepresentative
from consortium.rounds.models import MetricReport, Round, RoundState, Submission
from consortium.rounds.selectors import round_in_flight
from consortium.rounds.services import (
    policy_activate,
    policy_create,
    policy_new_version,
    scheduler_tick,
)
from tests.conftest import encrypted_update, upload_headers
from tests.portal.conftest import report, seed_history

pytestmark = pytest.mark.django_db

MODEL = {"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"}
SIGNED, REPORTED = "5.48", 6.49  # the figures: signed at upload, reported a round late
STAFF_PAGES = ["/", "/rounds/", "/rounds/1/", "/banks/", "/banks/alpha/", "/policies/", "/audit/"]


def _policy(**fields: Any) -> Any:
    settings = {
        "min_banks": 3,
        "deadline": timedelta(minutes=10),
        "normalize_features": False,
        "model_spec": MODEL,
        "secure_aggregation": "v1",  # these tests send v1 containers
        **fields,
    }
    return policy_create(name="fraud", actor="test", activate=True, **settings)


def _figures(html: str) -> str:
    """The page less its raw audit events: the trail records what a bank sent, ε included,
    as it sent it; it is evidence, not a figure the page states."""
    start = html.find('data-testid="bank-events"')
    return html if start < 0 else html[:start] + html[html.find("</section>", start) :]


def _publish(ckks: Any, banks: list[Any], *, epsilon: str | None = None) -> Round:
    """Open a round, every bank uploads (signing ``epsilon`` under DP), the tick publishes it."""
    scheduler_tick()
    rnd = round_in_flight()
    assert rnd is not None
    left = "true" if epsilon else None
    for seed, persona in enumerate(banks):
        body, _ = encrypted_update(ckks, rnd.vector_length, seed=seed)
        response = Client().put(
            f"/api/v1/rounds/{rnd.number}/update",
            data=body,
            content_type="application/octet-stream",
            **upload_headers(persona, rnd.number, body, epsilon=epsilon, budget_left=left),
        )
        assert response.status_code == 201, response.content
    scheduler_tick()
    rnd.refresh_from_db()
    assert rnd.state == RoundState.PUBLISHED
    return rnd


@pytest.fixture
def three(bank_alpha: Any, bank_beta: Any, bank_gamma: Any) -> list[Any]:
    return [bank_alpha, bank_beta, bank_gamma]


# --- the banner ------------------------------------------------------------------------------


def test_every_staff_page_shows_the_halt_with_its_reason_and_a_link_to_the_way_forward(
    ckks, epoch, three, operator, auditor, client_for
):
    _policy(max_rounds=1)
    _publish(ckks, three)
    scheduler_tick()
    for user in (operator, auditor):
        client = client_for(user)
        for url in STAFF_PAGES:
            html = client.get(url).content.decode()
            assert 'data-testid="halt-banner"' in html, (user, url)
            assert "halted: maximum rounds reached (1 of 1 training rounds)" in html, url
            assert 'href="/#consortium-state"' in html, url
    overview = client_for(operator).get("/").content.decode()
    assert 'data-reason="max_rounds"' in overview
    assert "Way forward: Publish a new policy version" in overview
    assert 'href="/policies/">Publish a new policy version</a>' in overview


def test_a_bank_representative_sees_no_banner_and_it_goes_once_the_consortium_runs_again(
    ckks, epoch, three, operator, client_for, django_user_model, bank_alpha
):
    policy = _policy(max_rounds=1)
    _publish(ckks, three)
    scheduler_tick()
    rep = django_user_model.objects.create_user("rep", password="x")
    BankRepresentative.objects.create(user=rep, bank=bank_alpha.bank)
    assert "halt-banner" not in client_for(rep).get("/banks/alpha/").content.decode()
    newer = policy_new_version(base=policy, actor="test", max_rounds=2)
    policy_activate(policy=newer, actor="test")
    scheduler_tick()
    assert "halt-banner" not in client_for(operator).get("/rounds/").content.decode()


def test_the_policy_pages_count_training_rounds_against_max_rounds(
    ckks, epoch, three, operator, client_for
):
    policy = _policy(max_rounds=1, normalize_features=True)
    _publish_statistics(ckks, three)
    _publish(ckks, three)
    client = client_for(operator)
    listed = client.get("/policies/").content.decode()
    assert '<td class="num nowrap" data-testid="training-rounds">1 of 1</td>' in listed
    detail = client.get(f"/policies/{policy.pk}/").content.decode()
    assert "1 published training round; 1 published so far" in detail
    assert "2 in all (1 published statistics, 1 published training)" in detail


def _publish_statistics(ckks: Any, banks: list[Any]) -> None:
    scheduler_tick()
    stats = round_in_flight()
    assert stats is not None and stats.kind == "statistics"
    for persona in banks:
        body, _ = encrypted_update(ckks, stats.vector_length, seed=3)
        headers = upload_headers(persona, stats.number, body)
        response = Client().put(
            f"/api/v1/rounds/{stats.number}/update",
            data=body,
            content_type="application/octet-stream",
            **headers,
        )
        assert response.status_code == 201
    # The next tick publishes it (and opens the first training round).


# --- one ε -----------------------------------------------------------------------------------


@pytest.fixture
def reported_late(ckks: Any, epoch: Any, three: list[Any]) -> Round:
    """Round 1 under a DP policy: every bank signed ε 5.48 with its upload, then reported
    6.49 in its metrics (the issue's mismatch)."""
    _policy(max_rounds=5, dp_target_epsilon=8.0)
    rnd = _publish(ckks, three, epsilon=SIGNED)
    for persona in three:
        assert report(rnd, persona, {"auprc": 0.4, "epsilon": REPORTED}).status_code == 200
    assert MetricReport.objects.filter(metrics__epsilon=REPORTED).count() == 3
    return rnd


def test_every_page_shows_the_signed_epsilon_not_the_one_reported_a_round_late(
    reported_late, operator, client_for
):
    client = client_for(operator)
    for url in ["/", "/banks/", "/banks/alpha/", "/rounds/", "/rounds/1/"]:
        html = _figures(client.get(url).content.decode())
        assert "6.49" not in html, url
        assert "5.48" in html, url
    detail = client.get("/rounds/1/").content.decode()
    assert detail.count('data-testid="epsilon-signed">5.48</td>') == 3
    bank = client.get("/banks/alpha/").content.decode()
    assert 'data-testid="epsilon-signed">5.48</td>' in bank
    assert "alpha, round 1: 5.480" in bank  # the ε plot's point
    for url in ["/", "/banks/"]:
        assert 'data-testid="epsilon-signed">5.48</td>' in client.get(url).content.decode()


def test_the_epsilon_plot_draws_the_policys_budget_line(reported_late, operator, client_for):
    html = client_for(operator).get("/rounds/").content.decode()
    assert 'data-reference="budget ε = 8"' in html
    assert "highest ε any bank signed, round 1: 5.480" in html


def test_the_exporter_and_the_report_carry_the_signed_epsilon_and_the_budget(reported_late):
    from audit.report import Selection
    from consortium.audit_api.services import audit_report_export

    family = next(
        m for m in DatabaseCollector().collect() if m.name == "consortium_bank_privacy_epsilon"
    )
    assert {s.labels["bank"]: s.value for s in family.samples} == {
        "alpha": 5.48,
        "beta": 5.48,
        "gamma": 5.48,
    }
    export = audit_report_export(selection=Selection(rounds=(1,)), fmt="json", actor="test")
    privacy = export.report["rounds"][0]["privacy"]
    assert privacy["epsilon_spent"] == {"alpha": 5.48, "beta": 5.48, "gamma": 5.48}
    assert privacy["epsilon_budget"] == 8.0


# --- queries ---------------------------------------------------------------------------------


def _more_history(policy: Any, epoch: Any, *, start: int, count: int) -> None:
    """Published rounds ``start``..``start + count - 1`` with five signed ε each (rows only)."""
    banks = list(Bank.objects.order_by("slug"))
    now = timezone.now()
    Round.objects.bulk_create(
        Round(
            number=n,
            policy=policy,
            policy_snapshot=policy.snapshot(),
            key_epoch=epoch,
            vector_length=policy.vector_length,
            state=RoundState.PUBLISHED,
            opened_at=now,
            deadline_at=now,
            closed_at=now,
            manifest={"round": n, "inputs": []},
        )
        for n in range(start, start + count)
    )
    Submission.objects.bulk_create(
        Submission(
            round=rnd,
            bank=banks[(rnd.number + k) % len(banks)],
            digest=f"{rnd.number:032d}{k:032d}",
            signature="c2ln",
            signing_public_key="A" * 43 + "=",
            size_bytes=1,
            blob="x",
            epsilon_spent=0.01 * rnd.number,
            budget_left=True,
        )
        for rnd in Round.objects.filter(number__gte=start)
        for k in range(5)
    )


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_the_signed_epsilon_and_the_banner_add_no_query_per_row(
    policy, epoch, operator, client_for
):
    seed_history(banks=20, rounds=20, per_round=5, policy=policy, epoch=epoch, epsilon=True)
    # A bank the overview lists as needing attention before and after: an empty list is
    # one query less (no page to fetch), which is not a query per row.
    Bank.objects.filter(slug="bank-000").update(status=BankStatus.SUSPENDED)
    scheduler_tick()  # max_rounds 3 passed long ago: halted, and the banner shows
    client = client_for(operator)
    urls = ["/", "/banks/", "/banks/bank-003/", "/rounds/", "/rounds/20/", "/policies/"]
    before = {url: _queries(client, url) for url in urls}
    assert 'data-testid="halt-banner"' in client.get("/").content.decode()
    _more_history(policy, epoch, start=21, count=80)
    after = {url: _queries(client, url) for url in urls}
    after["/rounds/20/"] = _queries(client, "/rounds/100/")
    assert after == before

"""Opening a v2 round (cohort, threshold, limits), its uploads' format, and the v1 path."""

from __future__ import annotations

import logging

import pytest
from django.utils import timezone

from consortium.members.models import Bank, BankStatus
from consortium.metrics.collector import DatabaseCollector
from consortium.rounds.models import Round, RoundState
from consortium.rounds.selectors import round_in_flight
from consortium.rounds.services import round_close_due, round_open_next
from consortium.rounds.uploads import container_max_bytes, container_max_bytes2, upload_limit
from he.params import CkksParams
from tests.conftest import encrypted_update, upload_headers
from tests.consortium.secagg_rounds.conftest import masked_policy_create, play, roster_store

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore")]


def test_a_v2_round_opens_in_sharing_with_the_roster_cohort_and_a_majority_threshold(governed):
    now = timezone.now()
    assert round_open_next(now) == ["training round 1 opened"]
    rnd = Round.objects.get()
    assert rnd.state == RoundState.SHARING and rnd.masked
    assert rnd.cohort == ["alpha", "beta", "delta", "gamma"] and rnd.threshold == 3
    assert rnd.phase_deadline_at == now + rnd.policy.deadline / 4
    assert rnd.deadline_at == now + rnd.policy.deadline


def test_a_round_in_its_sharing_phase_is_in_flight_and_blocks_the_next(governed):
    round_open_next(timezone.now())
    assert round_open_next(timezone.now()) == []
    in_flight = round_in_flight()
    assert in_flight is not None and in_flight.state == RoundState.SHARING
    metrics = {m.name: m for m in DatabaseCollector().collect()}
    assert metrics["consortium_round_in_flight_number"].samples[0].value == in_flight.number


def test_the_cohort_leaves_out_banks_that_are_not_active(governed):
    Bank.objects.filter(slug="delta").update(status=BankStatus.SUSPENDED)
    round_open_next(timezone.now())
    rnd = Round.objects.get()
    assert rnd.cohort == ["alpha", "beta", "gamma"] and rnd.threshold == 3


def test_a_cohort_above_the_max_banks_limit_does_not_open(governed, settings, caplog):
    settings.MAX_BANKS_PER_ROUND = 3
    with caplog.at_level(logging.WARNING):
        done = round_open_next(timezone.now())
    assert len(done) == 1 and "CONSORTIUM_MAX_BANKS_PER_ROUND" in done[0]
    assert "above the portal's limit of 3 banks per round" in done[0]
    assert "no round opened" in caplog.text
    assert not Round.objects.exists()


def test_a_cohort_below_the_minimum_does_not_open(governed):
    Bank.objects.filter(slug__in=["gamma", "delta"]).update(status=BankStatus.SUSPENDED)
    done = round_open_next(timezone.now())
    assert done == [
        "no round opened: only 2 active roster members are active banks (alpha, beta); "
        "a v2 round under policy masked v1 needs at least 3"
    ]
    assert not Round.objects.exists()


def test_a_v2_policy_without_a_stored_roster_does_not_open(members, masked_policy):
    done = round_open_next(timezone.now())
    assert len(done) == 1 and "needs the banks' signed roster" in done[0]
    assert not Round.objects.exists()


def test_a_v2_round_takes_only_seeded_v2_containers_within_the_v2_limit(
    client, governed, secret_kit, ckks
):
    round_open_next(timezone.now())
    game = play(Round.objects.get(), governed, secret_kit)
    game.advertise("alpha", "beta", "gamma", "delta")
    round_close_due(timezone.now())
    game.rnd.refresh_from_db()
    params = CkksParams.from_dict(game.rnd.key_epoch.ckks_params)
    body = game.masked_upload("alpha", seed=1)
    assert (
        len(body) <= upload_limit(game.rnd) == container_max_bytes2(params, game.rnd.vector_length)
    )
    v1_body, _ = encrypted_update(ckks, game.rnd.vector_length)
    # A v1 container is four times the size of a seeded v2 one: above the v2 round's limit.
    assert game.upload(client, "alpha", seed=1, body=v1_body).status_code == 413
    response = game.upload(client, "alpha", seed=1, body=v1_body[: len(body)])
    assert response.status_code == 400
    assert "not a v2 encrypted vector" in response.json()["message"]
    assert game.upload(client, "alpha", seed=1, body=body).status_code == 201


def test_a_v1_policy_still_runs_the_v1_path(client, members, ckks, epoch):
    policy = masked_policy_create("plain", secure_aggregation="v1")
    roster_store(members, ckks, policy)
    round_open_next(timezone.now())
    rnd = Round.objects.get()
    assert rnd.state == RoundState.OPEN and not rnd.masked
    assert rnd.cohort == [] and rnd.threshold is None and rnd.phase_deadline_at is None
    params = CkksParams.from_dict(epoch.ckks_params)
    assert upload_limit(rnd) == container_max_bytes(params, rnd.vector_length)
    body, _ = encrypted_update(ckks, rnd.vector_length)
    response = client.put(
        f"/api/v1/rounds/{rnd.number}/update",
        data=body,
        content_type="application/octet-stream",
        **upload_headers(members["alpha"].persona, rnd.number, body),
    )
    assert response.status_code == 201, response.content


def test_the_portal_and_the_api_show_a_round_in_its_sharing_phase(client, operator, governed):
    round_open_next(timezone.now())
    client.force_login(operator)
    for page in ["/", "/rounds/", "/rounds/1/"]:
        response = client.get(page)
        assert response.status_code == 200, page
        assert "sharing" in response.content.decode().lower(), page
    current = client.get("/api/v1/rounds/current")
    assert current.status_code == 200 and current.json()["state"] == "sharing"


def test_a_v1_round_whose_stored_snapshot_is_edited_to_v2_stays_a_v1_round(members, ckks, epoch):
    """The operator rewrites an open v1 round's snapshot to v2 in its database: the scheduler
    must not move it into the v2 phases (it once jumped to unmasking with no upload)."""
    policy = masked_policy_create("plain", secure_aggregation="v1")
    roster_store(members, ckks, policy)
    round_open_next(timezone.now())
    rnd = Round.objects.get()
    Round.objects.filter(pk=rnd.pk).update(
        policy_snapshot={**rnd.policy_snapshot, "secure_aggregation": "v2"}
    )
    rnd.refresh_from_db()
    assert not rnd.masked
    round_close_due(timezone.now())
    rnd.refresh_from_db()
    assert rnd.state == RoundState.OPEN and rnd.survivors == [] and rnd.dropped == []

"""Who has acted in each phase of a v2 round: the selector, the round's portal page, and the
Prometheus counter of accepted and refused secagg messages."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from prometheus_client import REGISTRY

from consortium.rounds.models import Round, RoundState
from consortium.rounds.secagg_selectors import secagg_progress
from tests.consortium.secagg.conftest import round_row
from tests.consortium.secagg.secagg_helpers import (
    binding_of,
    mask_keys_body,
    post_reveal,
    put_keys,
    reveal_body,
)

pytestmark = pytest.mark.django_db


def counted(kind: str, outcome: str) -> float:
    labels = {"kind": kind, "outcome": outcome}
    return REGISTRY.get_sample_value("consortium_secagg_messages_total", labels) or 0.0


def test_in_sharing_the_round_waits_on_the_banks_that_have_not_posted_keys(
    client: Client, banks, sharing_round, dealers
):
    binding = binding_of(sharing_round)
    for slug in ("alpha", "gamma"):
        put_keys(client, 1, banks[slug], mask_keys_body(dealers[slug], banks, binding))
    sharing, uploads, unmasking = secagg_progress(sharing_round)
    assert (sharing.status, sharing.acted, sharing.awaited) == (
        "current",
        ["alpha", "gamma"],
        ["beta", "delta"],
    )
    assert sharing.deadline == sharing_round.phase_deadline_at
    assert (uploads.status, unmasking.status) == ("to come", "to come")
    assert unmasking.deadline is None


def test_in_unmasking_the_round_waits_on_the_survivors_that_have_not_revealed(
    client: Client, banks, unmasking_round, dealers
):
    body = reveal_body(dealers, "beta", 1, survivors=["alpha", "beta", "gamma"], dropped=["delta"])
    assert post_reveal(client, 1, banks["beta"], body).status_code == 200
    sharing, uploads, unmasking = secagg_progress(unmasking_round)
    assert (sharing.status, sharing.acted, sharing.awaited) == ("done", sorted(banks), [])
    assert sharing.deadline is None  # phase_deadline_at now ends the unmasking phase
    assert uploads.status == "done"
    assert (unmasking.status, unmasking.acted, unmasking.awaited) == (
        "current",
        ["beta"],
        ["alpha", "gamma"],
    )


def test_a_round_that_failed_in_sharing_never_reached_its_later_phases(banks, sharing_round):
    Round.objects.filter(pk=sharing_round.pk).update(state=RoundState.FAILED)
    sharing_round.refresh_from_db()
    assert [p.status for p in secagg_progress(sharing_round)] == [
        "done",
        "not reached",
        "not reached",
    ]


def test_the_round_page_shows_each_phase_its_deadline_and_who_it_waits_on(
    client: Client, banks, sharing_round, dealers
):
    put_keys(
        client, 1, banks["beta"], mask_keys_body(dealers["beta"], banks, binding_of(sharing_round))
    )
    staff = Client()
    staff.force_login(User.objects.get(username="olivia"))
    page = staff.get("/rounds/1/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-testid="secagg-phases"' in html
    assert "Sharing mask keys" in html and "Unmasking" in html
    assert (
        '<td data-testid="waiting-sharing"><span class="no">alpha, delta, gamma</span></td>' in html
    )
    assert sharing_round.phase_deadline_at.strftime("%Y-%m-%d %H:%M:%S") in html


def test_the_round_page_of_a_v1_round_has_no_secagg_phases(client: Client, banks, epoch, v1_policy):
    round_row(v1_policy, epoch, 2, RoundState.PUBLISHED)
    staff = Client()
    staff.force_login(User.objects.get(username="olivia"))
    page = staff.get("/rounds/2/")
    assert page.status_code == 200
    assert 'data-testid="secagg-phases"' not in page.content.decode()


def test_accepted_and_refused_messages_are_counted_by_kind(
    client: Client, banks, unmasking_round, dealers
):
    keys_refused = counted("mask_keys", "refused")
    reveals = counted("reveal", "accepted"), counted("reveal", "refused")
    # Sharing is over: a late key post is refused; a reveal is accepted, its retry not counted.
    late = mask_keys_body(dealers["alpha"], banks, binding_of(unmasking_round))
    late["signature"] = "AAAA"
    assert put_keys(client, 1, banks["alpha"], late).status_code == 409
    body = reveal_body(dealers, "beta", 1, survivors=["alpha", "beta", "gamma"], dropped=["delta"])
    assert post_reveal(client, 1, banks["beta"], body).status_code == 200
    assert post_reveal(client, 1, banks["beta"], body).status_code == 200
    assert post_reveal(client, 1, banks["delta"], body).status_code == 403
    assert counted("mask_keys", "refused") == keys_refused + 1
    assert (counted("reveal", "accepted"), counted("reveal", "refused")) == (
        reveals[0] + 1,
        reveals[1] + 1,
    )


def test_the_mask_keys_of_the_whole_cohort_were_counted_as_accepted(
    client: Client, banks, sharing_round, dealers
):
    accepted = counted("mask_keys", "accepted")
    binding = binding_of(sharing_round)
    for slug in sorted(banks):
        assert (
            put_keys(
                client, 1, banks[slug], mask_keys_body(dealers[slug], banks, binding)
            ).status_code
            == 200
        )
    assert counted("mask_keys", "accepted") == accepted + 4

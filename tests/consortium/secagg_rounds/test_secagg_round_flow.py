"""A v2 round end to end on real TenSEAL: phases, dropouts, refusals, wrong reveals."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from django.utils import timezone

from audit.models import AuditEvent
from consortium.rounds import storage
from consortium.rounds.models import Round, RoundState
from consortium.rounds.selectors import round_in_flight
from consortium.rounds.services import round_aggregate, round_close_due, round_open_next
from he.seeded import decrypt_vector2
from protocol import Manifest
from tests.consortium.secagg_rounds.conftest import play
from tests.consortium.secagg_rounds.masked_banks import MaskedRound

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore")]
COHORT = ["alpha", "beta", "delta", "gamma"]


@pytest.fixture
def game(governed: Any, secret_kit: Any) -> MaskedRound:
    """A v2 round in its sharing phase, and the four banks ready to play it."""
    round_open_next(timezone.now())
    rnd = round_in_flight()
    assert rnd is not None and rnd.state == RoundState.SHARING
    return play(rnd, governed, secret_kit)


def _state(game: MaskedRound) -> str:
    game.rnd.refresh_from_db()
    return str(game.rnd.state)


def _to_unmasking(client: Any, game: MaskedRound, uploaders: list[str]) -> None:
    """Everyone advertises, ``uploaders`` upload, and uploads close at the deadline."""
    game.advertise(*COHORT)
    round_close_due(timezone.now())
    assert _state(game) == RoundState.OPEN
    for seed, slug in enumerate(uploaders):
        response = game.upload(client, slug, seed=seed)
        assert response.status_code == 201, response.content
    round_close_due(game.rnd.deadline_at)
    assert _state(game) == RoundState.UNMASKING


def _publish(game: MaskedRound) -> Round:
    round_close_due(timezone.now())
    assert _state(game) == RoundState.AGGREGATING
    round_aggregate(game.rnd.number)
    game.rnd.refresh_from_db()
    return game.rnd


def _fedavg_error(game: MaskedRound, rnd: Round, survivors: list[str]) -> float:
    with open(storage.absolute(rnd.aggregate_blob), "rb") as blob:
        total = decrypt_vector2(game.kit, io.BytesIO(blob.read()))
    plain = game.expected_sum(survivors)
    assert abs(total[-2] - plain[-2]) < 1e-3  # the count slot: an integer sum of samples
    return float(np.max(np.abs(total[:-2] / total[-2] - plain[:-2] / plain[-2])))


@pytest.mark.parametrize("dropped", [[], ["delta"]], ids=["no dropout", "one dropout"])
def test_a_v2_round_publishes_the_exact_sum_of_its_survivors(client, game, dropped):
    survivors = [b for b in COHORT if b not in dropped]
    _to_unmasking(client, game, survivors)
    assert game.rnd.survivors == sorted(survivors) and game.rnd.dropped == dropped
    for slug in survivors:
        game.reveal(slug)
    rnd = _publish(game)
    assert rnd.state == RoundState.PUBLISHED, rnd.failure_reason
    assert _fedavg_error(game, rnd, survivors) <= 1e-6
    manifest = Manifest.from_dict(rnd.manifest)
    record = manifest.secure_aggregation
    assert record is not None and manifest.banks == tuple(sorted(survivors))
    assert record.survivors == tuple(sorted(survivors)) and record.dropped == tuple(dropped)
    assert [k.bank for k in record.keys] == COHORT and record.threshold == 3
    assert sorted(r.bank for r in record.reveals) == sorted(survivors)


def test_each_phase_change_is_audited(client, game):
    _to_unmasking(client, game, COHORT[:3])
    for slug in COHORT[:3]:
        game.reveal(slug)
    _publish(game)
    actions = list(
        AuditEvent.objects.filter(action__startswith="round.").values_list("action", flat=True)
    )
    expected = ["round.opened", "round.keys_shared", "round.unmasking", "round.aggregating"]
    assert actions[: len(expected) + 1] == [*expected, "round.published"]
    unmasking = AuditEvent.objects.get(action="round.unmasking")
    assert unmasking.data["dropped"] == ["gamma"]


def test_too_few_mask_keys_fail_the_round_at_the_end_of_sharing(game):
    game.advertise("alpha", "beta")
    assert round_close_due(timezone.now()) == []  # not due yet: the phase is still running
    round_close_due(game.rnd.phase_deadline_at)
    assert _state(game) == RoundState.FAILED
    assert "only 2 of the 3 mask keys needed" in game.rnd.failure_reason


def test_sharing_closes_at_its_deadline_with_a_threshold_of_mask_keys(game):
    game.advertise("alpha", "beta", "gamma")
    assert round_close_due(timezone.now()) == []
    round_close_due(game.rnd.phase_deadline_at)
    assert _state(game) == RoundState.OPEN


def test_too_few_uploads_fail_the_round_at_the_deadline(client, game):
    game.advertise(*COHORT)
    round_close_due(timezone.now())
    for seed, slug in enumerate(["alpha", "beta"]):
        assert game.upload(client, slug, seed=seed).status_code == 201
    round_close_due(game.rnd.deadline_at)
    assert _state(game) == RoundState.FAILED
    assert "only 2 of the 3 updates needed" in game.rnd.failure_reason


def test_too_few_reveals_fail_the_round_at_the_end_of_unmasking(client, game):
    _to_unmasking(client, game, COHORT[:3])
    game.reveal("alpha")
    game.reveal("beta")
    assert round_close_due(timezone.now()) == []
    round_close_due(game.rnd.phase_deadline_at)
    assert _state(game) == RoundState.FAILED
    assert "only 2 of the 3 reveals needed" in game.rnd.failure_reason


def test_a_late_upload_after_unmasking_began_is_refused_with_409(client, game):
    _to_unmasking(client, game, ["alpha", "beta", "gamma"])
    response = game.upload(client, "delta", seed=9)
    assert response.status_code == 409
    message = response.json()["message"]
    assert "closed its uploads" in message and "declared dropped" in message
    assert not game.rnd.submissions.filter(bank__slug="delta").exists()


def test_a_bank_that_advertised_no_mask_key_cannot_upload(client, game):
    game.advertise("alpha", "beta", "gamma")
    round_close_due(game.rnd.phase_deadline_at)
    assert _state(game) == RoundState.OPEN
    game.advertise("delta")  # too late: the API would refuse it; here it only yields a body
    body = game.masked_upload("delta", seed=3)
    game.rnd.mask_keys.filter(bank__slug="delta").delete()
    response = game.upload(client, "delta", seed=3, body=body)
    assert response.status_code == 403
    assert "you did not advertise a mask key in the sharing phase" in response.json()["message"]


def test_an_upload_in_the_sharing_phase_is_refused_with_409(client, game):
    game.advertise(*COHORT)
    body = game.masked_upload("alpha", seed=1)
    response = game.upload(client, "alpha", seed=1, body=body)
    assert response.status_code == 409 and "sharing phase" in response.json()["message"]


def test_a_wrong_seed_share_is_named_and_the_good_reveals_still_publish(client, game):
    _to_unmasking(client, game, COHORT)
    for slug in COHORT:
        game.reveal(slug, wrong_seed_of="gamma" if slug == "beta" else None)
    rnd = _publish(game)
    assert rnd.state == RoundState.PUBLISHED, rnd.failure_reason
    assert _fedavg_error(game, rnd, COHORT) <= 1e-6
    named = AuditEvent.objects.get(action="round.reveals_disagreed").data["banks"]
    assert named == {"beta": ["a wrong share of gamma's self-mask seed"]}


def test_a_wrong_seed_share_without_enough_good_reveals_fails_naming_the_revealers(client, game):
    _to_unmasking(client, game, ["alpha", "beta", "gamma"])
    for slug in ["alpha", "beta", "gamma"]:
        game.reveal(slug, wrong_seed_of="alpha" if slug == "beta" else None)
    rnd = _publish(game)
    assert rnd.state == RoundState.FAILED
    reason = rnd.failure_reason
    assert reason.startswith("unmasking failed: no 3 of the shares revealed by alpha, beta, gamma")
    assert "alpha's self-mask seed" in reason and "wrong share" in reason
    assert not rnd.aggregate_blob


def test_a_wrong_key_share_of_a_dropped_bank_fails_the_round_naming_the_revealers(client, game):
    _to_unmasking(client, game, ["alpha", "beta", "gamma"])
    for slug in ["alpha", "beta", "gamma"]:
        game.reveal(slug, wrong_key_of="delta" if slug == "gamma" else None)
    rnd = _publish(game)
    assert rnd.state == RoundState.FAILED
    assert "revealed by alpha, beta, gamma rebuild delta's round mask key" in rnd.failure_reason


def test_a_reveal_answering_another_request_is_named_and_left_out(client, game):
    _to_unmasking(client, game, COHORT)
    for slug in COHORT[:3]:
        game.reveal(slug)
    forged = game.reveal("gamma")  # replaced below by one answering another request
    game.rnd.reveals.filter(bank__slug="gamma").update(
        body={**forged.to_dict(), "dropped": ["alpha"], "survivors": ["beta", "delta", "gamma"]}
    )
    rnd = _publish(game)
    assert rnd.state == RoundState.PUBLISHED, rnd.failure_reason
    assert _fedavg_error(game, rnd, COHORT) <= 1e-6
    named = AuditEvent.objects.get(action="round.reveals_disagreed").data["banks"]
    assert named == {"gamma": ["a reveal that answers another unmask request"]}
    record = Manifest.from_dict(rnd.manifest).secure_aggregation
    assert record is not None and [r.bank for r in record.reveals] == ["alpha", "beta", "delta"]

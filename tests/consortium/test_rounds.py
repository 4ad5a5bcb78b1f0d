"""The round state machine, policies and key epochs."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from consortium.api.errors import ApplicationError
from consortium.rounds.models import Round, RoundPolicy, RoundState
from consortium.rounds.services import (
    key_epoch_register,
    policy_create,
    policy_new_version,
    scheduler_tick,
)
from he.codec import decrypt_vector, unpack_aggregate
from he.keys import secret_context_bytes
from tests.conftest import PARAMS, encrypted_update, upload_headers

pytestmark = pytest.mark.django_db


def _submit(client: Client, ckks: Any, rnd: Round, persona: Any, seed: int, n: int) -> np.ndarray:
    body, plain = encrypted_update(ckks, rnd.vector_length, seed=seed, n=n)
    response = client.put(
        f"/api/v1/rounds/{rnd.number}/update",
        data=body,
        content_type="application/octet-stream",
        **upload_headers(persona, rnd.number, body),
    )
    assert response.status_code == 201, response.content
    return plain


def test_the_round_publishes_once_every_active_bank_has_submitted(
    client, ckks, open_round, bank_alpha, bank_beta, bank_gamma
):
    plains = [
        _submit(client, ckks, open_round, p, seed=i, n=50 * (i + 1))
        for i, p in enumerate([bank_alpha, bank_beta])
    ]
    scheduler_tick()
    open_round.refresh_from_db()
    assert open_round.state == RoundState.OPEN  # gamma is still missing, deadline not passed
    plains.append(_submit(client, ckks, open_round, bank_gamma, seed=2, n=150))
    scheduler_tick()
    open_round.refresh_from_db()
    assert open_round.state == RoundState.PUBLISHED
    assert [i["bank"] for i in open_round.manifest["inputs"]] == ["alpha", "beta", "gamma"]

    response = client.get(f"/api/v1/rounds/{open_round.number}/aggregate", **bank_alpha.auth())
    assert response.status_code == 200
    blob = b"".join(response.streaming_content)
    summed = decrypt_vector(ckks.secret, io.BytesIO(blob), PARAMS)
    avg, total = unpack_aggregate(summed)
    expected = np.sum(plains, axis=0)
    assert total == 300
    assert np.max(np.abs(avg - expected[:-2] / expected[-2])) < 1e-6  # [n w..., n, tag]


def test_at_the_deadline_enough_submissions_are_aggregated_without_the_missing_bank(
    client, ckks, open_round, bank_alpha, bank_beta, bank_gamma, bank_delta
):
    for i, persona in enumerate([bank_alpha, bank_beta, bank_gamma]):  # delta never submits
        _submit(client, ckks, open_round, persona, i, 10)
    scheduler_tick()
    open_round.refresh_from_db()
    assert open_round.state == RoundState.OPEN  # before the deadline it waits for delta
    scheduler_tick(open_round.deadline_at + timedelta(seconds=1))
    open_round.refresh_from_db()
    assert open_round.state == RoundState.PUBLISHED
    assert len(open_round.manifest["inputs"]) == 3


def test_too_few_submissions_by_the_deadline_fail_the_round_and_the_next_one_opens(
    client, ckks, open_round, bank_alpha
):
    _submit(client, ckks, open_round, bank_alpha, 0, 10)
    scheduler_tick(open_round.deadline_at + timedelta(seconds=1))
    open_round.refresh_from_db()
    assert open_round.state == RoundState.FAILED
    assert "only 1 of the 3" in open_round.failure_reason
    following = Round.objects.get(number=open_round.number + 1)
    assert following.state == RoundState.OPEN
    assert following.base_round is None  # nothing was published yet


def test_the_next_round_starts_from_the_last_published_aggregate(
    client, ckks, open_round, bank_alpha, bank_beta, bank_gamma
):
    for i, persona in enumerate([bank_alpha, bank_beta, bank_gamma]):
        _submit(client, ckks, open_round, persona, i, 10)
    scheduler_tick()
    following = Round.objects.get(number=open_round.number + 1)
    assert following.base_round_id == open_round.pk


def test_no_round_opens_beyond_the_policys_maximum(ckks, open_round, policy):
    Round.objects.filter(pk=open_round.pk).update(state=RoundState.PUBLISHED)
    for n in range(2, 4):
        Round.objects.create(
            number=open_round.number + n - 1,
            policy=policy,
            vector_length=policy.vector_length,
            policy_snapshot=policy.snapshot(),
            key_epoch=open_round.key_epoch,
            state=RoundState.PUBLISHED,
            opened_at=timezone.now(),
            deadline_at=timezone.now(),
        )
    assert scheduler_tick() == []
    assert not Round.objects.filter(state=RoundState.OPEN).exists()


def test_an_individual_update_is_never_served_and_an_open_round_has_no_aggregate(
    client, ckks, open_round, bank_alpha, operator
):
    _submit(client, ckks, open_round, bank_alpha, 0, 10)
    response = client.get(f"/api/v1/rounds/{open_round.number}/aggregate", **bank_alpha.auth())
    assert response.status_code == 409
    client.force_login(operator)
    assert client.get(f"/api/v1/rounds/{open_round.number}/aggregate").status_code == 409
    # And no route exists that names a submission.
    from django.urls import get_resolver

    assert not any("submission" in str(p.pattern) for p in get_resolver().url_patterns)


def test_a_policy_used_by_a_round_cannot_be_edited_in_place(open_round, policy):
    policy.refresh_from_db()
    policy.local_epochs = 99
    with pytest.raises(ValidationError, match="new version"):
        policy.save()
    newer = policy_new_version(base=policy, actor="test", local_epochs=99)
    assert newer.version == policy.version + 1
    assert RoundPolicy.objects.get(pk=policy.pk).local_epochs != 99


@pytest.mark.parametrize("min_banks", [0, 1, 2])
def test_min_banks_below_three_is_refused_with_a_reason(db, min_banks):
    with pytest.raises(ApplicationError, match="min_banks"):
        policy_create(name="bad", actor="test", min_banks=min_banks)


@pytest.mark.parametrize("min_banks", [1, 2])
def test_the_policy_api_explains_why_min_banks_below_three_is_refused(client, operator, min_banks):
    client.force_login(operator)
    response = client.post(
        "/api/v1/policies/", {"name": "p", "min_banks": min_banks}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "learns the other's update" in response.json()["message"]


def test_the_database_refuses_a_policy_with_min_banks_two_even_past_the_validators(db):
    from django.db import IntegrityError, transaction

    policy = policy_create(name="ok", actor="test", min_banks=3)
    with pytest.raises(IntegrityError), transaction.atomic():
        RoundPolicy.objects.filter(pk=policy.pk).update(min_banks=2)


def test_the_portal_refuses_a_context_that_carries_a_secret_key(db, ckks):
    with pytest.raises(ApplicationError, match="secret key"):
        key_epoch_register(
            public_context=secret_context_bytes(ckks.secret),
            ckks_params=PARAMS.to_dict(),
            actor="test",
        )


def test_the_key_epoch_api_refuses_a_secret_context_with_400(client, operator, ckks):
    from tests.conftest import b64

    client.force_login(operator)
    response = client.post(
        "/api/v1/key-epochs/",
        {
            "public_context_b64": b64(secret_context_bytes(ckks.secret)),
            "ckks_params": PARAMS.to_dict(),
        },
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "secret key" in response.json()["message"]
    from consortium.rounds.models import KeyEpoch

    assert KeyEpoch.objects.count() == 0


def test_a_bank_cannot_use_operator_endpoints(client, bank_alpha):
    response = client.post(
        "/api/v1/banks/", {"slug": "evil"}, content_type="application/json", **bank_alpha.auth()
    )
    assert response.status_code == 403
    assert "operators" in response.json()["message"]


def test_metrics_are_accepted_only_for_published_rounds(client, ckks, open_round, bank_alpha):
    url = f"/api/v1/rounds/{open_round.number}/metrics"
    early = client.post(
        url, {"metrics": {"auprc": 0.5}}, content_type="application/json", **bank_alpha.auth()
    )
    assert early.status_code == 409
    Round.objects.filter(pk=open_round.pk).update(state=RoundState.PUBLISHED)
    ok = client.post(
        url, {"metrics": {"auprc": 0.5}}, content_type="application/json", **bank_alpha.auth()
    )
    assert ok.status_code == 200 and ok.json()["self_reported"] is True


def test_the_openapi_schema_is_generated(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/rounds/{number}/update" in paths


def test_a_statistics_round_comes_first_and_training_rounds_then_use_its_aggregate(
    client, ckks, epoch, bank_alpha, bank_beta, bank_gamma
):
    from consortium.rounds.models import RoundKind

    policy = policy_create(
        name="normalised",
        actor="test",
        activate=True,
        min_banks=3,
        model_spec={"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"},
        secure_aggregation="v1",  # sends v1 containers
    )
    scheduler_tick()
    stats = Round.objects.get(state=RoundState.OPEN)
    assert stats.kind == RoundKind.STATISTICS
    assert stats.vector_length == 2 * policy.n_features + 2  # + count and integrity slots
    assert stats.base_round is None
    for i, persona in enumerate([bank_alpha, bank_beta, bank_gamma]):
        _submit(client, ckks, stats, persona, i, 10)
    scheduler_tick()
    stats.refresh_from_db()
    assert stats.state == RoundState.PUBLISHED
    training = Round.objects.get(state=RoundState.OPEN)
    assert training.kind == RoundKind.TRAINING
    assert training.stats_round_id == stats.pk
    assert training.vector_length == policy.vector_length
    detail = client.get(f"/api/v1/rounds/{training.number}", **bank_alpha.auth()).json()
    assert detail["stats_round"] == stats.number and detail["kind"] == "training"


def test_after_a_key_rotation_rounds_use_the_new_epoch_and_continue_from_the_old_aggregate(
    client, ckks, open_round, bank_alpha, bank_beta, bank_gamma
):
    from he.keys import fingerprint, generate_secret_context, public_context_bytes

    for i, persona in enumerate([bank_alpha, bank_beta, bank_gamma]):
        _submit(client, ckks, open_round, persona, i, 10)
    # Rotate before the scheduler opens the next round.
    from consortium.rounds.services import round_aggregate, round_close_due

    round_close_due(timezone.now())
    round_aggregate(open_round.number)
    new_public = public_context_bytes(generate_secret_context(PARAMS))
    new_epoch = key_epoch_register(
        public_context=new_public, ckks_params=PARAMS.to_dict(), actor="test"
    )
    scheduler_tick()
    following = Round.objects.get(number=open_round.number + 1)
    assert following.key_epoch_id == new_epoch.pk
    assert following.base_round_id == open_round.pk
    detail = client.get(f"/api/v1/rounds/{following.number}", **bank_alpha.auth()).json()
    assert detail["key_epoch"] == fingerprint(new_public)
    assert detail["base_key_epoch"] == ckks.fingerprint
    epoch_now = client.get("/api/v1/key-epochs/current", **bank_alpha.auth()).json()
    assert epoch_now["fingerprint"] == fingerprint(new_public)


def test_the_round_list_is_newest_first(
    client, ckks, open_round, bank_alpha, bank_beta, bank_gamma
):
    for i, persona in enumerate([bank_alpha, bank_beta, bank_gamma]):
        _submit(client, ckks, open_round, persona, i, 10)
    scheduler_tick()  # publishes round 1 and opens round 2
    numbers = [
        r["number"] for r in client.get("/api/v1/rounds/", **bank_alpha.auth()).json()["results"]
    ]
    assert numbers == sorted(numbers, reverse=True) and len(numbers) == 2

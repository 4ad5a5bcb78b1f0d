"""Sketch rounds at the portal: the policy field, its refusals, and where the round opens."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from consortium.api.errors import ApplicationError
from consortium.rounds.models import Round, RoundKind, RoundPolicy, RoundState
from consortium.rounds.services import policy_create, scheduler_tick
from models.counterparty_sketch import SKETCH_FEATURE_NAMES
from models.features import FEATURE_NAMES
from protocol import PolicySnapshot
from tests.conftest import encrypted_update, upload_headers
from tests.protocol.messages import sketch_dict

pytestmark = pytest.mark.django_db

SMALL_MODEL = {"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"}


def _policy(**fields: Any) -> Any:
    return policy_create(
        name="sketched",
        actor="test",
        activate=True,
        min_banks=3,
        model_spec=SMALL_MODEL,
        secure_aggregation="v1",  # the test sends v1 containers
        **fields,
    )


def _publish(client: Client, ckks: Any, rnd: Round, personas: list[Any]) -> None:
    for i, persona in enumerate(personas):
        body, _ = encrypted_update(ckks, rnd.vector_length, seed=i, n=1)
        response = client.put(
            f"/api/v1/rounds/{rnd.number}/update",
            data=body,
            content_type="application/octet-stream",
            **upload_headers(persona, rnd.number, body),
        )
        assert response.status_code == 201, response.content
    scheduler_tick()
    rnd.refresh_from_db()
    assert rnd.state == RoundState.PUBLISHED


def test_a_sketch_round_opens_before_the_statistics_round_and_training(
    client, ckks, epoch, bank_alpha, bank_beta, bank_gamma
):
    policy = _policy(counterparty_sketch=sketch_dict())
    assert policy.n_features == len(FEATURE_NAMES) + len(SKETCH_FEATURE_NAMES)
    personas = [bank_alpha, bank_beta, bank_gamma]
    scheduler_tick()
    sketch = Round.objects.get(state=RoundState.OPEN)
    assert sketch.kind == RoundKind.SKETCH
    assert sketch.vector_length == 2 * 4 * 2 * 64 + 2  # dates x channels x depth x width
    assert sketch.base_round is None and sketch.stats_round is None
    detail = client.get(f"/api/v1/rounds/{sketch.number}", **bank_alpha.auth()).json()
    assert detail["kind"] == "sketch"
    assert detail["policy"]["counterparty_sketch"] == sketch_dict()
    _publish(client, ckks, sketch, personas)
    stats = Round.objects.get(state=RoundState.OPEN)  # with the cross-bank features' moments
    assert stats.kind == RoundKind.STATISTICS
    assert stats.vector_length == 2 * policy.n_features + 2
    _publish(client, ckks, stats, personas)
    training = Round.objects.get(state=RoundState.OPEN)
    assert training.kind == RoundKind.TRAINING
    assert training.vector_length == policy.vector_length
    assert training.stats_round_id == stats.pk


def test_a_policy_without_sketches_opens_no_sketch_round(
    client, ckks, epoch, bank_alpha, bank_beta, bank_gamma
):
    _policy()
    scheduler_tick()
    _publish(
        client, ckks, Round.objects.get(state=RoundState.OPEN), [bank_alpha, bank_beta, bank_gamma]
    )
    assert Round.objects.get(state=RoundState.OPEN).kind == RoundKind.TRAINING
    assert not Round.objects.filter(kind=RoundKind.SKETCH).exists()
    assert RoundPolicy.objects.get().n_features == len(FEATURE_NAMES)


def test_a_policy_without_sketches_keeps_the_digest_it_had_before_the_field(epoch):
    policy = _policy()
    snapshot = policy.snapshot()
    assert snapshot["counterparty_sketch"] is None
    del snapshot["counterparty_sketch"]
    assert PolicySnapshot.from_dict(snapshot).digest() == policy.as_snapshot().digest()
    assert b"counterparty_sketch" not in policy.as_snapshot().canonical_json()


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (sketch_dict(epsilon=5.0), "counterparty_sketch.epsilon"),
        (sketch_dict(width=3), "counterparty_sketch.width"),
        ({"as_of": ["2022-09-08"]}, "counterparty_sketch.window_days"),
        # min_banks 3: against one curious member two others' noise must make the guarantee.
        (sketch_dict(noise_split=3), "counterparty_sketch.noise_split"),
    ],
)
def test_a_bad_sketch_spec_is_refused_with_the_field_named(epoch, spec, words):
    with pytest.raises(ApplicationError) as caught:
        _policy(counterparty_sketch=spec)
    assert words in caught.value.message


def test_a_sketch_too_large_to_upload_is_refused(epoch, settings):
    settings.MAX_UPLOAD_BYTES = 100_000
    with pytest.raises(ApplicationError, match="upload limit"):
        _policy(counterparty_sketch=sketch_dict(width=4096))


def test_the_api_refuses_a_bad_sketch_with_a_400_naming_it(client, operator):
    client.force_login(operator)
    response = client.post(
        "/api/v1/policies/",
        data={"name": "sketched", "counterparty_sketch": sketch_dict(depth=0)},
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    assert "counterparty_sketch.depth" in response.json()["message"]


def test_a_spec_entered_with_its_default_noise_split_finds_its_published_sketch_round(
    client, ckks, epoch, bank_alpha, bank_beta, bank_gamma
):
    """The snapshot leaves ``noise_split: 1`` out (the digest banks signed before it existed);
    the policy as entered holds it: still one spec, so training follows, not a second sketch."""
    policy = _policy(counterparty_sketch=sketch_dict(noise_split=1))
    assert "noise_split" not in policy.snapshot()["counterparty_sketch"]
    personas = [bank_alpha, bank_beta, bank_gamma]
    scheduler_tick()
    _publish(client, ckks, Round.objects.get(state=RoundState.OPEN), personas)
    assert Round.objects.get(state=RoundState.OPEN).kind == RoundKind.STATISTICS
    assert Round.objects.filter(kind=RoundKind.SKETCH).count() == 1

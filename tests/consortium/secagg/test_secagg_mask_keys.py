"""PUT/GET rounds/{n}/mask-keys: the sharing phase of a v2 round, on real keys, over HTTP."""

from __future__ import annotations

import base64
import os
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from consortium.rounds.models import MaskKey, Round, RoundState
from he.sharebox import MAX_SEALED_BYTES, open_share
from he.signing import sign
from protocol import mask_keys_message
from tests.conftest import make_bank
from tests.consortium.secagg.conftest import round_row
from tests.consortium.secagg.secagg_helpers import (
    CONSORTIUM,
    assert_refused,
    b64,
    binding_of,
    mask_keys_body,
    put_keys,
    refused_event,
    stored,
)

pytestmark = pytest.mark.django_db


def test_a_cohort_bank_posts_its_signed_keys_and_boxes_and_they_are_stored(
    client: Client, banks, sharing_round, dealers
):
    body = mask_keys_body(dealers["alpha"], banks, binding_of(sharing_round))
    answer = put_keys(client, 1, banks["alpha"], body)
    assert answer.status_code == 200, answer.content
    assert answer.json()["recipients"] == ["beta", "delta", "gamma"]
    row = MaskKey.objects.get(round=sharing_round, bank__slug="alpha")
    assert (row.mask_public_key, row.seed_commitment, row.signature, row.shares) == (
        body["mask_public_key"],
        body["seed_commitment"],
        body["signature"],
        body["shares"],
    )
    event = AuditEvent.objects.get(action="mask_keys.accepted")
    assert event.data["signature"] == body["signature"]
    assert "shares" not in event.data  # no share bytes in the trail
    assert not any(box in str(event.data) for box in body["shares"].values())


def test_a_retry_with_the_same_body_gets_the_same_answer_and_stores_nothing_more(
    client: Client, banks, sharing_round, dealers
):
    body = mask_keys_body(dealers["alpha"], banks, binding_of(sharing_round))
    first = put_keys(client, 1, banks["alpha"], body)
    before = stored(sharing_round)
    again = put_keys(client, 1, banks["alpha"], body)
    assert (again.status_code, again.json()) == (200, first.json())
    assert stored(sharing_round) == before


def test_a_second_post_with_another_body_is_a_conflict(
    client: Client, banks, sharing_round, dealers
):
    binding = binding_of(sharing_round)
    assert (
        put_keys(
            client, 1, banks["alpha"], mask_keys_body(dealers["alpha"], banks, binding)
        ).status_code
        == 200
    )
    other = mask_keys_body(dealers["alpha"], banks, binding)  # fresh nonces: other boxes
    before = stored(sharing_round)
    answer = put_keys(client, 1, banks["alpha"], other)
    assert_refused(answer, 409, "already posted its mask keys", sharing_round, before)
    event = refused_event("mask_keys")
    assert event is not None and event.data["reason"] == "second different mask keys"


def test_a_forged_signature_is_refused(client: Client, banks, sharing_round, dealers):
    body = mask_keys_body(dealers["alpha"], banks, binding_of(sharing_round))
    message = mask_keys_message(
        CONSORTIUM, 1, "alpha", body["mask_public_key"], body["seed_commitment"]
    )
    body["signature"] = sign(banks["beta"].keys.key, message)  # beta signs for alpha
    before = stored(sharing_round)
    answer = put_keys(client, 1, banks["alpha"], body)
    assert_refused(
        answer, 403, "does not verify with bank alpha's roster signing key", sharing_round, before
    )
    event = refused_event("mask_keys")
    assert event is not None and event.data == {
        "round": 1,
        "bank": "alpha",
        "reason": "bad signature",
    }


def test_a_signed_key_replayed_from_another_round_is_refused(
    client: Client, banks, sharing_round, dealers
):
    # Genuinely signed by alpha, for round 7: the round number is inside the signature.
    replayed = mask_keys_body(dealers["alpha"], banks, binding_of(sharing_round, number=7))
    before = stored(sharing_round)
    answer = put_keys(client, 1, banks["alpha"], replayed)
    assert_refused(answer, 403, "signature does not verify", sharing_round, before)


def test_a_bank_outside_the_cohort_is_refused(client: Client, banks, sharing_round, dealers):
    Round.objects.filter(pk=sharing_round.pk).update(cohort=["alpha", "beta", "gamma"])
    body = mask_keys_body(dealers["delta"], banks, binding_of(sharing_round))
    before = stored(sharing_round)
    answer = put_keys(client, 1, banks["delta"], body)
    assert_refused(answer, 403, "bank delta is not among round 1's cohort", sharing_round, before)


def test_a_bank_that_is_not_in_the_roster_is_refused(client: Client, banks, sharing_round, dealers):
    stranger = make_bank("omega")
    before = stored(sharing_round)
    answer = client.put(
        "/api/v1/rounds/1/mask-keys",
        data=mask_keys_body(dealers["alpha"], banks, binding_of(sharing_round)),
        content_type="application/json",
        **stranger.auth(),
    )
    assert_refused(answer, 403, "bank omega is not among round 1's cohort", sharing_round, before)


@pytest.mark.parametrize(
    ("recipients", "named"),
    [
        (["beta", "gamma"], "missing ['delta'], not allowed []"),
        (["alpha", "beta", "gamma", "delta"], "missing [], not allowed ['alpha']"),
        ([], "missing ['beta', 'delta', 'gamma'], not allowed []"),
    ],
    ids=["one-peer-missing", "one-to-itself", "none"],
)
def test_boxes_addressed_to_another_set_than_the_other_cohort_banks_are_refused(
    client: Client, banks, sharing_round, dealers, recipients, named
):
    body = mask_keys_body(dealers["alpha"], banks, binding_of(sharing_round), recipients=recipients)
    before = stored(sharing_round)
    answer = put_keys(client, 1, banks["alpha"], body)
    assert_refused(answer, 400, named, sharing_round, before)
    assert answer.json()["extra"]["field"] == "shares"


def test_a_box_for_a_bank_outside_the_cohort_is_named(
    client: Client, banks, sharing_round, dealers
):
    body = mask_keys_body(dealers["alpha"], banks, binding_of(sharing_round))
    body["shares"]["mallory"] = body["shares"]["beta"]
    before = stored(sharing_round)
    answer = put_keys(client, 1, banks["alpha"], body)
    assert_refused(answer, 400, "not allowed ['mallory']", sharing_round, before)
    assert answer.json()["extra"]["extra"] == ["mallory"]


@pytest.mark.parametrize(
    ("box", "named"),
    [
        (b64(os.urandom(MAX_SEALED_BYTES + 1)), f"this one is {MAX_SEALED_BYTES + 1} bytes"),
        (b64(os.urandom(27)), "this one is 27 bytes"),
        ("not base64!", "this one is not base64"),
    ],
    ids=["oversize", "too-short", "not-base64"],
)
def test_a_box_that_cannot_be_a_sealed_share_is_refused(
    client: Client, banks, sharing_round, dealers, box, named
):
    body = mask_keys_body(dealers["alpha"], banks, binding_of(sharing_round))
    body["shares"]["gamma"] = box
    before = stored(sharing_round)
    answer = put_keys(client, 1, banks["alpha"], body)
    assert_refused(
        answer,
        400,
        f"shares.gamma: a share box is the base64 of 28..{MAX_SEALED_BYTES}",
        sharing_round,
        before,
    )
    assert named in answer.json()["message"]


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        # Fixed bytes, not random ones: the value is part of the test's id, which every
        # pytest-xdist worker must collect alike.
        ("mask_public_key", b64(bytes(31)), "mask_public_key must be the base64 of a 32-byte"),
        ("mask_public_key", "%%%", "mask_public_key must be the base64 of a 32-byte"),
        ("seed_commitment", "AB" * 32, "seed_commitment must be 64 lowercase hex"),
        ("seed_commitment", "ab" * 31, "seed_commitment must be 64 lowercase hex"),
    ],
)
def test_a_malformed_key_or_commitment_is_a_400_naming_the_field(
    client: Client, banks, sharing_round, dealers, field, value, named
):
    body = mask_keys_body(dealers["alpha"], banks, binding_of(sharing_round))
    body[field] = value
    before = stored(sharing_round)
    answer = put_keys(client, 1, banks["alpha"], body)
    assert_refused(answer, 400, named, sharing_round, before)
    assert answer.json()["extra"]["field"] == field


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"mask_public_key": "x", "seed_commitment": "y", "signature": "z"}, "shares: is missing"),
        ("a string", "expected an object"),
        (
            {
                "mask_public_key": "x",
                "seed_commitment": "y",
                "signature": "z",
                "shares": {"beta": 5},
            },
            "shares.beta: expected a base64 string",
        ),
        (
            {
                "mask_public_key": "x",
                "seed_commitment": "y",
                "signature": "z",
                "shares": {},
                "x": 1,
            },
            "x: is not a field of this message",
        ),
    ],
)
def test_a_body_of_the_wrong_shape_is_a_400_naming_the_field(
    client: Client, banks, sharing_round, body: Any, named: str
):
    before = stored(sharing_round)
    answer = put_keys(client, 1, banks["alpha"], body)
    assert_refused(answer, 400, named, sharing_round, before)


@pytest.mark.parametrize("state", [RoundState.OPEN, RoundState.UNMASKING, RoundState.FAILED])
def test_keys_posted_outside_the_sharing_phase_are_refused_naming_the_state(
    client: Client, banks, sharing_round, dealers, state
):
    Round.objects.filter(pk=sharing_round.pk).update(state=state)
    body = mask_keys_body(dealers["alpha"], banks, binding_of(sharing_round))
    before = stored(sharing_round)
    answer = put_keys(client, 1, banks["alpha"], body)
    assert_refused(
        answer,
        409,
        f"round 1 is {state}; mask keys are taken only while it is sharing",
        sharing_round,
        before,
    )


def test_a_v1_round_takes_no_mask_keys(client: Client, banks, epoch, v1_policy, dealers):
    v1 = round_row(v1_policy, epoch, 2, RoundState.PUBLISHED, cohort=["alpha", "beta"])
    body = mask_keys_body(dealers["alpha"], banks, binding_of(v1))
    before = stored(v1)
    answer = put_keys(client, 2, banks["alpha"], body)
    assert_refused(answer, 409, "round 2 runs secure aggregation v1", v1, before)
    assert_refused(
        client.get("/api/v1/rounds/2/mask-keys", **banks["alpha"].auth()), 409, "v1", v1, before
    )


def test_a_round_that_does_not_exist_is_a_404(client: Client, banks, sharing_round, dealers):
    body = mask_keys_body(dealers["alpha"], banks, binding_of(sharing_round))
    answer = put_keys(client, 9, banks["alpha"], body)
    assert (answer.status_code, answer.json()["message"]) == (404, "round 9 does not exist")


def test_cohort_banks_read_the_keys_so_far_and_only_the_boxes_sealed_to_them(
    client: Client, banks, sharing_round, dealers
):
    binding = binding_of(sharing_round)
    for slug in ("beta", "gamma"):
        assert (
            put_keys(
                client, 1, banks[slug], mask_keys_body(dealers[slug], banks, binding)
            ).status_code
            == 200
        )
    answer = client.get("/api/v1/rounds/1/mask-keys", **banks["alpha"].auth())
    assert answer.status_code == 200, answer.content
    data = answer.json()
    assert (data["final"], data["threshold"], data["cohort"]) == (False, 3, sorted(banks))
    assert [k["bank"] for k in data["keys"]] == ["beta", "gamma"]
    assert sorted(data["shares_for_you"]) == ["beta", "gamma"]
    # Alpha's node opens beta's box with its roster agreement key: the payload beta dealt it.
    opened = open_share(
        banks["alpha"].keys.agreement,
        "alpha",
        banks["beta"].keys.agreement.public_key(),
        "beta",
        base64.b64decode(data["shares_for_you"]["beta"]),
        binding,
    )
    assert opened == dealers["beta"].payloads["alpha"]


def test_the_keys_are_final_once_sharing_has_closed(client: Client, banks, sharing_round, dealers):
    binding = binding_of(sharing_round)
    assert (
        put_keys(
            client, 1, banks["beta"], mask_keys_body(dealers["beta"], banks, binding)
        ).status_code
        == 200
    )
    Round.objects.filter(pk=sharing_round.pk).update(state=RoundState.OPEN)
    data = client.get("/api/v1/rounds/1/mask-keys", **banks["alpha"].auth()).json()
    assert data["final"] is True
    assert [k["bank"] for k in data["keys"]] == ["beta"]


def test_a_bank_outside_the_cohort_cannot_read_the_keys(client: Client, banks, sharing_round):
    Round.objects.filter(pk=sharing_round.pk).update(cohort=["alpha", "beta", "gamma"])
    answer = client.get("/api/v1/rounds/1/mask-keys", **banks["delta"].auth())
    assert (answer.status_code, answer.json()["message"]) == (
        403,
        "bank delta is not among round 1's cohort",
    )


def test_keys_posted_after_the_phase_deadline_are_refused(
    client: Client, banks, sharing_round, dealers
):
    passed = timezone.now() - timedelta(seconds=1)
    Round.objects.filter(pk=sharing_round.pk).update(phase_deadline_at=passed)
    body = mask_keys_body(dealers["alpha"], banks, binding_of(sharing_round))
    before = stored(sharing_round)
    answer = put_keys(client, 1, banks["alpha"], body)
    assert_refused(
        answer, 409, "round 1's sharing phase passed its deadline at", sharing_round, before
    )


@pytest.mark.parametrize(("method", "path"), [("PUT", "mask-keys"), ("POST", "reveal")])
def test_a_nesting_bomb_is_a_400_from_the_bounded_parser(
    client: Client, banks, sharing_round, method, path
):
    bomb = "[" * 10_000 + "]" * 10_000
    before = stored(sharing_round)
    answer = client.generic(
        method,
        f"/api/v1/rounds/1/{path}",
        data=bomb,
        content_type="application/json",
        **banks["alpha"].auth(),
    )
    assert_refused(answer, 400, "JSON nested more than 32 levels deep", sharing_round, before)

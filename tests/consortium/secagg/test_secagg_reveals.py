"""GET rounds/{n}/unmask and POST rounds/{n}/reveal: the unmasking phase, on real shares."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from consortium.rounds.models import Round, RoundState, ShareReveal
from he.masking import public_bytes
from he.recovery import check_self_seed, recover_agreement_key, recover_self_seed
from he.shamir import Share
from tests.consortium.secagg.secagg_helpers import (
    assert_refused,
    binding_of,
    post_reveal,
    refused_event,
    reveal_body,
    stored,
)

pytestmark = pytest.mark.django_db

SURVIVORS = ["alpha", "beta", "gamma"]
DROPPED = ["delta"]


def honest(dealers, bank: str) -> dict:
    return reveal_body(dealers, bank, 1, survivors=SURVIVORS, dropped=DROPPED)


def test_a_survivor_reads_the_unmask_request(client: Client, banks, unmasking_round):
    answer = client.get("/api/v1/rounds/1/unmask", **banks["beta"].auth())
    assert answer.status_code == 200, answer.content
    assert answer.json() == {
        "round": 1,
        "threshold": 3,
        "survivors": SURVIVORS,
        "dropped": DROPPED,
    }


def test_a_dropped_bank_is_not_asked_to_unmask(client: Client, banks, unmasking_round):
    answer = client.get("/api/v1/rounds/1/unmask", **banks["delta"].auth())
    assert (answer.status_code, answer.json()["message"]) == (
        403,
        "bank delta is not among round 1's survivors",
    )


@pytest.mark.parametrize("state", [RoundState.SHARING, RoundState.OPEN])
def test_there_is_no_unmask_request_before_uploads_close(
    client: Client, banks, unmasking_round, state
):
    Round.objects.filter(pk=unmasking_round.pk).update(state=state)
    answer = client.get("/api/v1/rounds/1/unmask", **banks["alpha"].auth())
    assert answer.status_code == 409
    assert answer.json()["message"] == (
        f"round 1 is {state}; its unmask request is made when uploads close"
    )


def test_the_survivors_reveals_are_stored_and_rebuild_the_dropped_key_and_the_seeds(
    client: Client, banks, unmasking_round, dealers
):
    for bank in SURVIVORS:
        answer = post_reveal(client, 1, banks[bank], honest(dealers, bank))
        assert answer.status_code == 200, answer.content
        assert answer.json()["bank"] == bank
    bodies = [r.body for r in ShareReveal.objects.filter(round=unmasking_round)]
    assert AuditEvent.objects.filter(action="reveal.accepted").count() == 3
    # What the scheduler will do with them: the stored shares rebuild delta's mask key and
    # each survivor's committed self-mask seed.
    shares = [Share.from_bytes(base64.b64decode(b["key_shares"]["delta"])) for b in bodies]
    rebuilt = recover_agreement_key(shares, public_bytes(dealers["delta"].mask))
    assert public_bytes(rebuilt) == public_bytes(dealers["delta"].mask)
    binding = binding_of(unmasking_round)
    for bank in SURVIVORS:
        seed = recover_self_seed(
            [Share.from_bytes(base64.b64decode(b["seed_shares"][bank])) for b in bodies]
        )
        keys = {k.bank.slug: k for k in unmasking_round.mask_keys.select_related("bank")}
        assert check_self_seed(seed, keys[bank].seed_commitment, binding, bank) == seed


def test_a_reveal_retry_gets_the_same_answer_and_another_reveal_is_a_conflict(
    client: Client, banks, unmasking_round, dealers
):
    body = honest(dealers, "alpha")
    first = post_reveal(client, 1, banks["alpha"], body)
    before = stored(unmasking_round)
    again = post_reveal(client, 1, banks["alpha"], body)
    assert (again.status_code, again.json()) == (200, first.json())
    assert stored(unmasking_round) == before
    other = reveal_body(dealers, "alpha", 1, survivors=list(reversed(SURVIVORS)), dropped=DROPPED)
    answer = post_reveal(client, 1, banks["alpha"], other)
    assert_refused(answer, 409, "already revealed its shares for round 1", unmasking_round, before)


@pytest.mark.parametrize(
    ("survivors", "dropped"),
    [
        (["alpha", "beta"], ["gamma", "delta"]),  # names a survivor as dropped
        (["alpha", "beta", "gamma", "delta"], []),  # a request nobody made
        (["alpha", "beta", "gamma"], []),
    ],
    ids=["survivor-named-dropped", "nobody-dropped", "dropped-left-out"],
)
def test_a_reveal_for_another_request_is_refused(
    client: Client, banks, unmasking_round, dealers, survivors, dropped
):
    body = reveal_body(dealers, "alpha", 1, survivors=survivors, dropped=dropped)
    before = stored(unmasking_round)
    answer = post_reveal(client, 1, banks["alpha"], body)
    assert_refused(answer, 409, "the reveal answers another request", unmasking_round, before)
    assert answer.json()["extra"] == {"survivors": SURVIVORS, "dropped": DROPPED}
    event = refused_event("reveal")
    assert event is not None and event.data["reason"] == "another request"


@pytest.mark.parametrize(
    ("key_shares_of", "seed_shares_of", "named"),
    [
        (
            ["delta", "beta"],
            SURVIVORS,
            "key_shares must be keyed by exactly the dropped banks: missing [], not allowed ['beta']",
        ),
        (
            ["beta"],
            SURVIVORS,
            "key_shares must be keyed by exactly the dropped banks: missing ['delta'], not allowed ['beta']",
        ),
        (
            DROPPED,
            [*SURVIVORS, "delta"],
            "seed_shares must be keyed by exactly the survivors: missing [], not allowed ['delta']",
        ),
        (
            DROPPED,
            ["alpha", "beta"],
            "seed_shares must be keyed by exactly the survivors: missing ['gamma']",
        ),
    ],
    ids=[
        "key-share-of-a-survivor",
        "key-share-of-a-survivor-only",
        "seed-share-of-the-dropped",
        "seed-share-missing",
    ],
)
def test_a_reveal_that_could_unmask_or_is_incomplete_is_refused(
    client: Client, banks, unmasking_round, dealers, key_shares_of, seed_shares_of, named
):
    body = reveal_body(
        dealers,
        "alpha",
        1,
        survivors=SURVIVORS,
        dropped=DROPPED,
        key_shares_of=key_shares_of,
        seed_shares_of=seed_shares_of,
    )
    before = stored(unmasking_round)
    answer = post_reveal(client, 1, banks["alpha"], body)
    assert_refused(answer, 400, named, unmasking_round, before)


@pytest.mark.parametrize(
    ("share", "named"),
    [
        ("!!", "a share is base64"),
        (base64.b64encode(b"\x00" * 5).decode(), "a share is 18 or 34 bytes, got 5"),
    ],
)
def test_a_share_that_does_not_decode_is_refused(
    client: Client, banks, unmasking_round, dealers, share, named
):
    body = honest(dealers, "alpha")
    body["key_shares"]["delta"] = share
    before = stored(unmasking_round)
    answer = post_reveal(client, 1, banks["alpha"], body)
    assert_refused(answer, 400, f"key_shares.delta: {named}", unmasking_round, before)


def test_a_reveal_whose_signature_does_not_verify_is_refused(
    client: Client, banks, unmasking_round, dealers
):
    body = honest(dealers, "alpha")
    body["seed_shares"]["beta"] = honest(dealers, "gamma")["seed_shares"]["beta"]  # altered
    before = stored(unmasking_round)
    answer = post_reveal(client, 1, banks["alpha"], body)
    assert_refused(
        answer,
        403,
        "does not verify with bank alpha's roster signing key over its reveal",
        unmasking_round,
        before,
    )


def test_a_reveal_signed_for_another_round_is_refused(
    client: Client, banks, unmasking_round, dealers
):
    body = reveal_body(dealers, "alpha", 2, survivors=SURVIVORS, dropped=DROPPED)
    before = stored(unmasking_round)
    answer = post_reveal(client, 1, banks["alpha"], body)
    assert_refused(answer, 403, "signature does not verify", unmasking_round, before)


def test_a_dropped_bank_cannot_reveal(client: Client, banks, unmasking_round, dealers):
    body = reveal_body(dealers, "delta", 1, survivors=SURVIVORS, dropped=DROPPED)
    before = stored(unmasking_round)
    answer = post_reveal(client, 1, banks["delta"], body)
    assert_refused(
        answer, 403, "bank delta is not among round 1's survivors", unmasking_round, before
    )


def test_a_survivor_cannot_send_another_banks_reveal(
    client: Client, banks, unmasking_round, dealers
):
    before = stored(unmasking_round)
    answer = post_reveal(client, 1, banks["alpha"], honest(dealers, "beta"))
    assert_refused(
        answer,
        403,
        "this reveal names bank 'beta'; bank alpha may only send its own",
        unmasking_round,
        before,
    )


@pytest.mark.parametrize("state", [RoundState.OPEN, RoundState.AGGREGATING, RoundState.PUBLISHED])
def test_a_reveal_outside_the_unmasking_phase_is_refused(
    client: Client, banks, unmasking_round, dealers, state
):
    Round.objects.filter(pk=unmasking_round.pk).update(state=state)
    before = stored(unmasking_round)
    answer = post_reveal(client, 1, banks["alpha"], honest(dealers, "alpha"))
    assert_refused(
        answer,
        409,
        f"round 1 is {state}; reveals are taken only while it is unmasking",
        unmasking_round,
        before,
    )


def test_a_reveal_after_the_phase_deadline_is_refused(
    client: Client, banks, unmasking_round, dealers
):
    passed = timezone.now() - timedelta(seconds=1)
    Round.objects.filter(pk=unmasking_round.pk).update(phase_deadline_at=passed)
    before = stored(unmasking_round)
    answer = post_reveal(client, 1, banks["alpha"], honest(dealers, "alpha"))
    assert_refused(
        answer, 409, "round 1's unmasking phase passed its deadline at", unmasking_round, before
    )

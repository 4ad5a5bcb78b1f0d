"""GET rounds/{n}/submissions/{bank}: masked v2 uploads are public to members once published;
one v1 upload never leaves the portal."""

from __future__ import annotations

import hashlib
import os

import pytest
from django.test import Client

from consortium.members.models import Bank
from consortium.rounds import storage
from consortium.rounds.models import Round, RoundState, Submission
from tests.consortium.secagg.conftest import round_row

pytestmark = pytest.mark.django_db


def submitted(rnd: Round, slug: str) -> tuple[Submission, bytes]:
    """A stored upload of ``slug`` to ``rnd`` (its blob on disk, as the upload path leaves it)."""
    body = os.urandom(512)
    digest = hashlib.sha256(body).hexdigest()
    relpath = storage.upload_relpath(rnd.number, slug, digest)
    path = storage.absolute(relpath)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    sub = Submission.objects.create(
        round=rnd,
        bank=Bank.objects.get(slug=slug),
        digest=digest,
        signature="c2lnbmF0dXJl",
        signing_public_key="a2V5",
        size_bytes=len(body),
        blob=relpath,
    )
    return sub, body


@pytest.fixture
def published(banks, epoch, v2_policy) -> Round:
    return round_row(
        v2_policy,
        epoch,
        3,
        RoundState.PUBLISHED,
        cohort=sorted(banks),
        threshold=3,
        survivors=["alpha", "beta", "gamma"],
        dropped=["delta"],
    )


def test_a_member_downloads_a_survivors_masked_upload_of_a_published_round(
    client: Client, banks, published
):
    sub, body = submitted(published, "beta")
    answer = client.get("/api/v1/rounds/3/submissions/beta", **banks["alpha"].auth())
    assert answer.status_code == 200
    assert answer.getvalue() == body
    assert (answer["X-Update-Digest"], answer["Content-Length"]) == (sub.digest, str(len(body)))


def test_the_upload_of_a_bank_that_is_not_a_survivor_is_not_served(
    client: Client, banks, published
):
    submitted(published, "delta")  # arrived, but the round counted delta as dropped
    answer = client.get("/api/v1/rounds/3/submissions/delta", **banks["alpha"].auth())
    assert (answer.status_code, answer.json()["message"]) == (
        404,
        "bank delta is not a survivor of round 3: no upload to serve",
    )


def test_a_v1_upload_is_never_served(client: Client, banks, epoch, v1_policy):
    v1 = round_row(v1_policy, epoch, 2, RoundState.PUBLISHED, survivors=["alpha"])
    submitted(v1, "alpha")
    before = list(Submission.objects.values("digest", "blob"))
    answer = client.get("/api/v1/rounds/2/submissions/alpha", **banks["beta"].auth())
    assert answer.status_code == 404
    assert answer.json()["message"] == (
        "round 2 ran secure aggregation v1: its uploads are never served, because any holder "
        "of the consortium key could read them"
    )
    assert list(Submission.objects.values("digest", "blob")) == before


@pytest.mark.parametrize("state", [RoundState.OPEN, RoundState.UNMASKING, RoundState.AGGREGATING])
def test_the_uploads_of_an_unpublished_v2_round_are_not_served(
    client: Client, banks, published, state
):
    Round.objects.filter(pk=published.pk).update(state=state)
    submitted(published, "beta")
    before = list(Submission.objects.values("digest", "blob"))
    answer = client.get("/api/v1/rounds/3/submissions/beta", **banks["alpha"].auth())
    assert answer.status_code == 409
    assert answer.json()["message"] == (
        f"round 3 is {state}; its masked uploads are served once it is published"
    )
    assert list(Submission.objects.values("digest", "blob")) == before


def test_a_stranger_without_credentials_gets_nothing(client: Client, banks, published):
    submitted(published, "beta")
    answer = client.get("/api/v1/rounds/3/submissions/beta")
    assert answer.status_code == 401, answer.content
    assert "credentials were not provided" in answer.json()["message"]

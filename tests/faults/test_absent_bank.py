"""A member bank whose node never starts: the deadline rule closes the round without it."""

from __future__ import annotations

import time

import pytest

from tests.faults.conftest import next_round, wait_for, write_update

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

DEADLINE = 8


def test_a_bank_that_never_shows_up_does_not_stop_the_round_at_its_deadline(
    consortium, ckks, tmp_path
):
    portal, members = consortium
    url = portal.url()
    op = portal.operator()
    usual = next(p for p in op._json("GET", "policies/")["results"] if p["active"])
    # The round in flight runs under the usual policy: let it finish, with a short-deadline
    # version (min_banks 2) active for the next one.
    rnd = next_round(portal, members["alpha"])
    short = op.policy_create(
        **{k: usual[k] for k in ("name", "model_spec", "ckks_params", "normalize_features")},
        active=True,
        min_banks=2,
        max_rounds=50,
        deadline_seconds=DEADLINE,
    )
    for i, (slug, member) in enumerate(members.items()):
        path, digest, signature, _ = write_update(ckks, rnd, member, tmp_path, seed=i)
        member.client(url).upload_update(rnd.number, path, digest, signature)
    rnd = next_round(portal, members["alpha"])
    assert rnd.policy.min_banks == 2
    # Back to the usual policy for the rounds after this one (and the tests after this one).
    op._json("POST", f"policies/{usual['id']}/activate")
    assert short["id"] != usual["id"]

    number = rnd.number
    for i, slug in enumerate(["alpha", "beta"]):  # gamma's node never starts
        path, digest, signature, _ = write_update(ckks, rnd, members[slug], tmp_path, seed=i)
        members[slug].client(url).upload_update(number, path, digest, signature)
    time.sleep(1)
    assert portal.round_row(number)["state"] == "open"  # still waiting for gamma
    wait_for(
        "publication at the deadline",
        lambda: portal.round_row(number)["state"] == "published",
        timeout=DEADLINE + 20,
    )
    row = portal.round_row(number)
    assert row["closed_at"] >= row["deadline_at"]
    assert (row["closed_at"] - row["deadline_at"]).total_seconds() < 10
    assert sorted(i["bank"] for i in row["manifest"]["inputs"]) == ["alpha", "beta"]

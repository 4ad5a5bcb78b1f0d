"""A member bank whose node never starts: the deadline rule closes the round without it."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.faults.conftest import Portal, federate, open_round, wait_for, write_update

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

DEADLINE = 8


def test_a_bank_that_never_shows_up_does_not_stop_the_round_at_its_deadline(
    portal_factory: Callable[..., Portal], ckks, tmp_path
):
    # Its own portal with four banks: min_banks is at least 3, so three must submit and
    # the fourth (delta) can be the one that never shows up.
    portal = portal_factory()
    portal.start_web()
    portal.start_scheduler()
    members = federate(
        portal,
        ckks,
        ["alpha", "beta", "gamma", "delta"],
        min_banks=3,
        max_rounds=50,
        deadline_seconds=DEADLINE,
    )
    url = portal.url()
    rnd = open_round(portal, members["alpha"])
    assert rnd.policy.min_banks == 3

    number = rnd.number
    for i, slug in enumerate(["alpha", "beta", "gamma"]):  # delta's node never starts
        path, digest, signature, _ = write_update(ckks, rnd, members[slug], tmp_path, seed=i)
        members[slug].client(url).upload_update(number, path, digest, signature)
    time.sleep(1)
    assert portal.round_row(number)["state"] == "open"  # still waiting for delta
    wait_for(
        "publication at the deadline",
        lambda: portal.round_row(number)["state"] == "published",
        timeout=DEADLINE + 20,
    )
    row = portal.round_row(number)
    assert row["closed_at"] >= row["deadline_at"]
    assert (row["closed_at"] - row["deadline_at"]).total_seconds() < 10
    assert sorted(i["bank"] for i in row["manifest"]["inputs"]) == ["alpha", "beta", "gamma"]

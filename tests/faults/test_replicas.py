"""Two portal replicas (two gunicorns, two schedulers) on one database and blob store:
every round is aggregated and published once, and no submission is lost or doubled."""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bank_node.portal_client import BankClient, PortalError
from he.signing import public_key_b64
from tests.faults.conftest import Member, next_round, query, wait_for, write_update

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ROUNDS = 3
EXTRA = ["delta", "epsilon", "zeta", "eta", "theta"]


def _upload(member: Member, url: str, number: int, update: tuple) -> tuple[str, Any]:
    path, digest, signature, _ = update
    try:
        return member.slug, member.client(url).upload_update(number, path, digest, signature)
    except PortalError as exc:
        return member.slug, exc


def _per_round(portal, action: str, number: int) -> int:
    sql = "SELECT count(*) FROM audit_auditevent WHERE action = %s AND data->>'round' = %s"
    return int(query(portal.database_url, sql, action, str(number))[0][0])


def test_two_replicas_on_one_database_publish_each_round_once_and_lose_no_submission(
    consortium, ckks, tmp_path
):
    portal, members = consortium
    op = portal.operator()
    everyone = dict(members)
    for slug in EXTRA:
        key = Ed25519PrivateKey.generate()
        credential = op.bank_create(slug)["credential"]
        BankClient(portal.url(), credential).register_signing_key(public_key_b64(key))
        everyone[slug] = Member(slug, credential, key)
    portal.start_web("web2")
    portal.start_scheduler("scheduler2", interval=0.3)
    urls = [portal.url("web"), portal.url("web2")]
    numbers, accepted = [], {}
    try:
        for _ in range(ROUNDS):
            rnd = next_round(portal, members["alpha"])
            number = rnd.number
            numbers.append(number)
            updates = {
                slug: write_update(ckks, rnd, m, tmp_path, seed=number * 100 + i)
                for i, (slug, m) in enumerate(everyone.items())
            }
            rival = write_update(ckks, rnd, everyone["beta"], tmp_path, seed=number * 100 + 99)
            with ThreadPoolExecutor(max_workers=len(everyone) + 2) as pool:
                jobs = [
                    pool.submit(_upload, m, urls[i % 2], number, updates[slug])
                    for i, (slug, m) in enumerate(everyone.items())
                ]
                # alpha's retry races its own first attempt on the other replica, and beta
                # sends a second, different update to the other replica at the same time.
                jobs.append(
                    pool.submit(_upload, members["alpha"], urls[1], number, updates["alpha"])
                )
                jobs.append(pool.submit(_upload, members["beta"], urls[1], number, rival))
                results = [job.result() for job in jobs]
            failures = [(slug, r) for slug, r in results if isinstance(r, PortalError)]
            assert [slug for slug, _ in failures] == ["beta"], failures
            assert failures[0][1].status == 409
            wins = {slug: r.digest for slug, r in results if not isinstance(r, PortalError)}
            assert wins["beta"] in (updates["beta"][1], rival[1])
            accepted[number] = wins
            wait_for(
                f"round {number} to publish",
                lambda: portal.round_row(number)["state"] == "published",  # waited for here
            )
    finally:
        portal.stop("scheduler2")
        portal.stop("web2")
        for slug in EXTRA:  # later tests expect the three usual banks only
            op.bank_action(slug, "suspend")

    logs = portal.log("scheduler") + portal.log("scheduler2")
    for number in numbers:
        row = portal.round_row(number)
        inputs = {i["bank"]: i["digest"] for i in row["manifest"]["inputs"]}
        assert inputs == accepted[number] == portal.submitted(number)
        assert _per_round(portal, "round.published", number) == 1
        assert _per_round(portal, "round.aggregating", number) == 1
        assert _per_round(portal, "update.accepted", number) == len(everyone)
        assert len(re.findall(rf"round {number} published", logs)) == 1
        # No orphan blob from a lost race: one file per accepted update, byte-exact.
        blobs = portal.blobs("uploads", number)
        assert sorted(hashlib.sha256(b.read_bytes()).hexdigest() for b in blobs) == sorted(
            inputs.values()
        )
        aggregate = (portal.var_dir / "blobs" / row["aggregate_blob"]).read_bytes()
        assert hashlib.sha256(aggregate).hexdigest() == row["aggregate_digest"]

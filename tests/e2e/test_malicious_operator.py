"""The attack of issue "Banks govern the consortium", replayed with full operator powers.

A live portal (gunicorn and the scheduler, PostgreSQL in CI) and three member banks whose
nodes pin the genesis they signed. The operator here holds everything an operator holds:
the REST API as operator, the database (plain SQL) and the blob store. It onboards a sham
bank, swaps a member's key, publishes a forged aggregate of the victim's update with a
manifest naming the sham bank and the swapped key, serves a round whose policy has DP off,
and replaces an aggregate with one it encrypted itself. The nodes are the real agent
(``bank_node.cli.agent_from_config``, as ``bank-node run`` builds it) stepped in this
process, over real HTTP; every refusal must leave them running, say why, object to the
portal, and keep their last good model.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bank_node.agent import Agent
from bank_node.checks import Refused
from bank_node.cli import agent_from_config
from bank_node.config import load_config
from bank_node.keys import (
    PARAMS,
    PUBLIC_CONTEXT,
    SECRET_CONTEXT,
    ckks_keygen,
)
from bank_node.portal_client import OperatorClient, PortalError
from governance import PrivacyFloor
from he.aggregate import sum_vectors
from he.codec import encrypt_vector, pack_update
from he.keys import load_public_context
from he.params import CkksParams
from he.signing import public_key_b64, sign, update_message
from simulation import ceremony
from simulation.world import generate_world
from tests.e2e.conftest import LivePortal, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SLUGS = ("alpha", "beta", "gamma")
STATUS_CACHE_SECONDS = 1.0  # CONSORTIUM_STATUS_CACHE_SECONDS, the portal's default
SPEC = {"kind": "mlp", "hidden": [16], "seed": 3, "loss": "bce"}


@dataclass
class Federation:
    portal: LivePortal
    op: OperatorClient
    work: Path
    params: CkksParams
    fingerprint: str
    agents: dict[str, Agent]
    approved_policy: dict[str, Any]

    @property
    def public(self) -> Any:
        raw = (self.work / "ceremony" / PUBLIC_CONTEXT).read_bytes()
        return load_public_context(raw, self.params)

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """The operator's own database: plain SQL, no portal code in the way."""
        assert self.portal.database_url, "this test needs the PostgreSQL run"
        conn = psycopg2.connect(self.portal.database_url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(query, args)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def blob(self, relpath: str) -> Path:
        return self.portal.var_dir / "blobs" / relpath

    def step(self, *slugs: str) -> None:
        """One poll of each node, as ``bank-node run`` does it (a portal error is retried)."""
        for slug in slugs or SLUGS:
            try:
                self.agents[slug].step()
            except PortalError:
                pass

    def round_state(self, number: int) -> str | None:
        rows = self.sql("SELECT state FROM rounds_round WHERE number = %s", number)
        return rows[0][0] if rows else None

    def open_round(self) -> int:
        """Wait for the scheduler to open the next round; its number."""
        return int(until(lambda: self.sql("SELECT number FROM rounds_round WHERE state='open'")))

    def settle(self) -> None:
        """Wait out the portal's per-worker cache of round answers (at most twice its 1 s
        default old), so that what the operator wrote in the database is what the nodes
        are served."""
        time.sleep(2 * STATUS_CACHE_SECONDS + 0.5)

    def fail_open_rounds(self, why: str) -> None:
        self.sql(
            "UPDATE rounds_round SET state='failed', closed_at=now(), failure_reason=%s "
            "WHERE state IN ('open', 'aggregating')",
            why,
        )

    def publish(self, number: int, blob: bytes, inputs: list[dict[str, Any]]) -> None:
        """What a malicious operator can always do: publish any bytes with any manifest."""
        relpath = f"aggregates/round-{number:05d}.ckks"
        self.blob(relpath).parent.mkdir(parents=True, exist_ok=True)
        self.blob(relpath).write_bytes(blob)
        digest = hashlib.sha256(blob).hexdigest()
        manifest = {
            "round": number,
            "key_epoch": self.fingerprint,
            "aggregate_digest": digest,
            "inputs": inputs,
        }
        self.sql(
            "UPDATE rounds_round SET state='published', closed_at=now(), aggregate_digest=%s, "
            "aggregate_size=%s, aggregate_blob=%s, manifest=%s WHERE number=%s",
            digest,
            len(blob),
            relpath,
            json.dumps(manifest),
            number,
        )
        self.settle()


def _bank(work: Path, url: str, op: OperatorClient, slug: str, data: Path) -> ceremony.Bank:
    bank = ceremony.bank_prepare(work / slug, work / "ceremony", op)
    home = bank.home
    bank.client(url).register_signing_key(public_key_b64(bank.signing_key))
    (home / "node.toml").write_text(
        f'portal_url = "{url}"\nbank = "{slug}"\ncredential_file = "credential"\n'
        f'signing_key_file = "signing.key"\nsecret_context_file = "{SECRET_CONTEXT}"\n'
        f'ckks_params_file = "{PARAMS}"\ndata_file = "{data}"\nstate_dir = "state"\n'
        f'genesis_file = "{ceremony.GENESIS_FILE}"\nmax_retries = 2\n'
    )
    return bank


@pytest.fixture(scope="module")
def fed(live_portal: LivePortal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    if not live_portal.database_url:
        pytest.skip("the operator's SQL powers are exercised on PostgreSQL (make test runs it)")
    work = tmp_path_factory.mktemp("attack")
    generate_world(work / "data", n_banks=3, preset="tiny", seed=21)
    params = CkksParams()
    fingerprint = ckks_keygen(work / "ceremony", params)
    url = live_portal.url
    op = OperatorClient(url, "operator", live_portal.operator_password)
    op.key_epoch_register(
        base64.b64encode((work / "ceremony" / PUBLIC_CONTEXT).read_bytes()).decode(),
        params.to_dict(),
    )
    approved = op.policy_create(
        name="fraud",
        active=False,
        min_banks=3,
        local_epochs=1,
        batch_size=512,
        learning_rate=3e-3,
        max_rounds=20,
        # The attacks below fail rounds on purpose; the scheduler must keep opening them.
        max_consecutive_failures=50,
        deadline_seconds=900,
        normalize_features=False,
        dp_target_epsilon=50.0,
        model_spec=SPEC,
        ckks_params=params.to_dict(),
        # The roster attacks below forge v1 aggregates from one bank's ciphertext; the same
        # attacks on v2 rounds (substituted aggregates, late uploads, collusion) are in
        # test_secure_aggregation.py.
        secure_aggregation="v1",
    )
    data = sorted((work / "data").glob("bank_*.csv"))
    banks = [_bank(work, url, op, slug, csv) for slug, csv in zip(SLUGS, data, strict=True)]
    draft = ceremony.draft_genesis(
        "attack-test",
        banks,
        key_epoch=fingerprint,
        policies=[ceremony.approval_of(approved)],
        privacy=PrivacyFloor(dp_required=True, epsilon_ceiling=50.0),
    )
    genesis = ceremony.found(url, op, banks, draft)
    for bank in banks:
        ceremony.write_genesis(genesis, bank.home / ceremony.GENESIS_FILE)
    agents = {b.slug: agent_from_config(load_config(b.home / "node.toml")) for b in banks}
    op.policy_activate(approved["id"])
    yield Federation(live_portal, op, work, params, fingerprint, agents, approved)


def _model(fed: Federation, slug: str) -> np.ndarray:
    return np.load(fed.agents[slug].config.state_dir / "global_model.npy")


def _model_round(fed: Federation, slug: str) -> int:
    about = fed.agents[slug].config.state_dir / "global_model.json"
    return int(json.loads(about.read_text())["round"])


def _assert_last_good_model_kept(
    fed: Federation, forged: int, before: dict[str, tuple[int, np.ndarray]]
) -> None:
    """The forged round never became a node's model. A node that evaluated an honest round
    published meanwhile (one it uploaded to while finishing the previous test) moved on to
    that one; any other node still holds exactly the model it had."""
    for slug in SLUGS:
        kept = _model_round(fed, slug)
        assert kept != forged
        if kept == before[slug][0]:
            assert np.array_equal(_model(fed, slug), before[slug][1])


def _objections(fed: Federation) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{fed.portal.url}/api/v1/objections",
        auth=("operator", fed.portal.operator_password),
        timeout=30,
    )
    answer.raise_for_status()
    body = answer.json()
    return list(body["results"] if isinstance(body, dict) and "results" in body else body)


def test_an_honest_round_under_the_signed_charter_is_published_and_used_by_every_node(fed):
    number = fed.open_round()
    until(lambda: fed.step() or all(str(number) in a.state.evaluated for a in fed.agents.values()))
    assert fed.round_state(number) == "published"
    for slug in SLUGS:
        assert _model(fed, slug).size > 0


def test_a_sham_bank_and_a_swapped_key_never_get_the_victims_update_used(fed):
    before = {slug: (_model_round(fed, slug), _model(fed, slug)) for slug in SLUGS}
    fed.op.bank_create("sham")
    operator_key = Ed25519PrivateKey.generate()
    # The operator swaps beta's key and gives the sham bank one, in its own database.
    fed.sql(
        "UPDATE members_bank SET signing_public_key=%s WHERE slug IN ('sham', 'beta')",
        public_key_b64(operator_key),
    )
    number = fed.open_round()
    # Only the victim uploads (polling until it has: the portal caches round answers).
    until(lambda: fed.step("alpha") or str(number) in fed.agents["alpha"].state.submitted)
    victim = fed.sql(
        "SELECT s.digest, s.signature, s.blob, s.epsilon_spent, s.budget_left "
        "FROM rounds_submission s "
        "JOIN rounds_round r ON r.id = s.round_id JOIN members_bank b ON b.id = s.bank_id "
        "WHERE r.number = %s AND b.slug = 'alpha'",
        number,
    )
    assert victim, "the victim's upload was not accepted"
    digest, signature, relpath, epsilon, budget_left = victim[0]
    signed_by_alpha = {
        "bank": "alpha",
        "digest": digest,
        "signature": signature,
        "epsilon": epsilon,
        "budget_left": budget_left,
    }
    # A forged "aggregate": the victim's ciphertext plus encrypted zeros in the names of
    # the sham bank and of beta. Decrypted, it would be alpha's update alone.
    zeros = fed.work / "zeros.ckks"
    length = fed.sql("SELECT vector_length FROM rounds_round WHERE number=%s", number)[0][0]
    with open(zeros, "wb") as out:
        zero_digest = encrypt_vector(fed.public, np.zeros(length), fed.params, fed.fingerprint, out)
    forged = io.BytesIO()
    sum_vectors([fed.blob(relpath), zeros, zeros], fed.public, fed.params, forged)
    fake = sign(operator_key, update_message(number, "beta", zero_digest))
    fed.publish(
        number,
        forged.getvalue(),
        [
            signed_by_alpha,
            {"bank": "sham", "digest": zero_digest, "signature": fake},
            {"bank": "beta", "digest": zero_digest, "signature": fake},
        ],
    )
    # The victim evaluates what it submitted to; the others would meet it as the base of
    # the next round (``global_weights`` is that path). The scheduler opens no next round
    # on its own here: the forged round shows too few banks with DP budget left.
    until(lambda: fed.step("alpha") or str(number) in fed.agents["alpha"].state.refused)
    for slug in ("beta", "gamma"):
        with pytest.raises(Refused, match="not on the roster"):
            fed.agents[slug].global_weights(number, fed.fingerprint)
    refusal = fed.agents["alpha"].state.refused[str(number)]
    assert "bank 'sham', which is not on the roster" in refusal
    for slug in SLUGS:
        assert str(number) not in fed.agents[slug].state.evaluated
    _assert_last_good_model_kept(fed, number, before)
    # The operator gives up on this one (and on any round it opened on top of it); later
    # rounds start from the last honest aggregate.
    fed.sql("UPDATE rounds_round SET state='failed' WHERE number=%s", number)
    fed.fail_open_rounds("test: after the forged manifest")


def test_a_round_whose_policy_has_dp_switched_off_is_refused_by_every_node(fed):
    unapproved = fed.op.policy_create(
        **{
            k: fed.approved_policy[k]
            for k in ("name", "min_banks", "local_epochs", "batch_size", "learning_rate")
        },
        max_rounds=20,
        max_consecutive_failures=50,
        deadline_seconds=900,
        normalize_features=False,
        dp_target_epsilon=None,
        model_spec=SPEC,
        ckks_params=fed.params.to_dict(),
    )
    with pytest.raises(PortalError) as refused:
        fed.op.policy_activate(unapproved["id"])
    assert refused.value.status == 409 and "approve" in refused.value.message
    number = fed.open_round()
    # Through its database the operator serves the open round under the DP-off snapshot.
    fed.sql(
        "UPDATE rounds_round SET policy_snapshot=%s WHERE number=%s",
        json.dumps(unapproved["snapshot"] | {"version": fed.approved_policy["version"]}),
        number,
    )
    fed.settle()
    until(lambda: fed.step() or all(str(number) in a.state.skipped for a in fed.agents.values()))
    for slug in SLUGS:
        assert "not approved" in fed.agents[slug].state.skipped[str(number)]
    assert not fed.sql(
        "SELECT 1 FROM rounds_submission s JOIN rounds_round r ON r.id = s.round_id "
        "WHERE r.number = %s",
        number,
    ), "a node trained and uploaded under a policy the banks never approved"
    fed.fail_open_rounds("test: after the DP-off policy")


def test_an_aggregate_the_operator_encrypted_itself_is_refused(fed):
    before = {slug: (_model_round(fed, slug), _model(fed, slug)) for slug in SLUGS}
    number = fed.open_round()
    # Each node polls only until it has uploaded: none may see the honest aggregate before
    # the operator swaps it.
    for slug in SLUGS:
        agent = fed.agents[slug]
        until(lambda: fed.step(agent.config.bank) or str(number) in agent.state.submitted)
    until(lambda: fed.round_state(number) == "published")
    inputs = fed.sql("SELECT manifest FROM rounds_round WHERE number=%s", number)[0][0]["inputs"]
    # Its own model, with the count and a tag guessed as well as it can (it has no key).
    length = fed.sql("SELECT vector_length FROM rounds_round WHERE number=%s", number)[0][0]
    evil = pack_update(np.full(length - 2, 0.5), 900, 4.5)
    own = io.BytesIO()
    encrypt_vector(fed.public, evil, fed.params, fed.fingerprint, own)
    fed.publish(number, own.getvalue(), inputs)
    until(lambda: fed.step() or all(str(number) in a.state.refused for a in fed.agents.values()))
    for slug in SLUGS:
        assert "integrity" in fed.agents[slug].state.refused[str(number)]
    _assert_last_good_model_kept(fed, number, before)


def test_every_refusal_is_an_objection_the_portal_shows_with_its_reason(fed):
    objections = _objections(fed)
    by_bank: dict[str, set[str]] = {}
    for objection in objections:
        by_bank.setdefault(objection["bank"], set()).add(objection["reason_code"])
    assert set(by_bank) == set(SLUGS)
    assert "cohort" in by_bank["alpha"]
    for slug in SLUGS:
        assert "policy_not_approved" in by_bank[slug]
        assert "aggregate_integrity" in by_bank[slug]


def test_no_node_ever_used_an_aggregate_of_fewer_than_min_banks_roster_members(fed):
    manifests = {
        number: manifest
        for number, manifest in fed.sql("SELECT number, manifest FROM rounds_round")
        if manifest
    }
    for agent in fed.agents.values():
        for number in agent.state.evaluated:
            banks = {i["bank"] for i in manifests[int(number)]["inputs"]}
            assert banks <= set(SLUGS) and len(banks) >= 3

"""Secure aggregation v2 through a live portal on PostgreSQL: dropouts, late uploads,
substituted aggregates and collusion, with the operator's full powers.

Five member banks found a consortium whose genesis approves two v2 policies: ``three``
(min_banks 3, so the Shamir threshold is 3 and two banks may drop out) and ``four``
(min_banks 4, threshold 4). The nodes are the real agent (``agent_from_config``) stepped in
this process over real HTTP; the portal is gunicorn plus the scheduler, which pauses a few
seconds before each publication so that the test can act between the last reveal and the
nodes' use of the aggregate (the operator's substitution).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from bank_node.agent import Agent
from bank_node.cli import agent_from_config
from bank_node.config import load_config
from bank_node.keys import AGREEMENT_KEY, PARAMS, PUBLIC_CONTEXT, SECRET_CONTEXT, ckks_keygen
from bank_node.portal_client import BankClient, OperatorClient, PortalError
from bank_node.secagg_state import round_file_if_any
from he.codec import unpack_aggregate
from he.errors import HEError
from he.keys import load_public_context, load_secret_context
from he.masking import MaskTerm, RoundBinding, pair_sign, pairwise_seed
from he.params import CkksParams
from he.recovery import key_share, recover_agreement_key, recover_self_seed, seed_share
from he.ring import SealKit, kit_from_tenseal
from he.seeded import decrypt_vector2, masker_for, sum_vectors2
from he.shamir import Share
from he.sharebox import open_share
from he.signing import sign, update_message_v2
from protocol import RoundInfo, SecAggRecord
from simulation import ceremony
from simulation.processes import PortalOptions, free_port, portal_env, running_portal
from simulation.world import generate_world
from tests.e2e.conftest import LivePortal, _fresh_database
from tests.e2e.conftest import until as wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

SLUGS = ("alpha", "beta", "gamma", "delta", "epsilon")
CONSORTIUM = "secagg-e2e"
SPEC = {"kind": "mlp", "hidden": [16], "seed": 3, "loss": "bce"}
DEADLINE = 60  # seconds; sharing and unmasking get a quarter each
PUBLISH_PAUSE = "6"  # CONSORTIUM_FAULT_SLEEP_IN_AGGREGATION: seconds between sum and publish
STATUS_CACHE_SECONDS = 1.0


@dataclass
class Fed:
    portal: LivePortal
    op: OperatorClient
    work: Path
    agents: dict[str, Agent]
    policies: dict[str, dict[str, Any]]
    fingerprint: str

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = psycopg2.connect(self.portal.database_url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(query, args)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def step(self, *slugs: str) -> bool:
        """One poll of each node, as ``bank-node run`` does it; False, so that
        ``until(lambda: done() or fed.step(...))`` polls again."""
        for slug in slugs:
            try:
                self.agents[slug].step()
            except PortalError:
                pass
        return False

    def state(self, number: int) -> str:
        rows = self.sql("SELECT state FROM rounds_round WHERE number = %s", number)
        return str(rows[0][0]) if rows else ""

    def next_round(self, after: int) -> int:
        """Wait for the scheduler to open a round numbered above ``after``."""
        rows = until(
            lambda: self.sql(
                "SELECT number FROM rounds_round WHERE number > %s "
                "AND state IN ('sharing', 'open')",
                after,
            )
        )
        return int(rows)

    def step_until_done(self, number: int, banks: tuple[str, ...], timeout: float) -> None:
        """Step each bank until it has used (evaluated) or refused round ``number``; a bank
        that is done is no longer stepped, so it does not run ahead into the next round."""

        def pending() -> list[str]:
            return [
                s
                for s in banks
                if str(number) not in self.agents[s].state.evaluated
                and str(number) not in self.agents[s].state.refused
            ]

        until(lambda: not pending() or self.state(number) == "failed" or self.step(*pending()),
              timeout=timeout)  # fmt: skip

    def count(self, table: str, number: int) -> int:
        rows = self.sql(
            f"SELECT count(*) FROM {table} t JOIN rounds_round r ON r.id = t.round_id "
            "WHERE r.number = %s",
            number,
        )
        return int(rows[0][0])

    def home(self, slug: str) -> Path:
        return self.work / slug

    def client(self, slug: str) -> BankClient:
        return self.agents[slug].client

    def info(self, number: int) -> RoundInfo:
        return self.client("alpha").round(number)

    def record(self, number: int) -> SecAggRecord:
        manifest = self.info(number).manifest
        assert manifest is not None and manifest.secure_aggregation is not None
        return manifest.secure_aggregation

    def binding(self, number: int) -> RoundBinding:
        return RoundBinding(CONSORTIUM, number, self.fingerprint)

    def kits(self) -> tuple[SealKit, SealKit]:
        params = CkksParams()
        secret = load_secret_context((self.work / "ceremony" / SECRET_CONTEXT).read_bytes())
        public = load_public_context((self.work / "ceremony" / PUBLIC_CONTEXT).read_bytes(), params)
        return kit_from_tenseal(secret, params), kit_from_tenseal(public, params)

    def plain(self, slug: str, number: int) -> np.ndarray:
        return np.load(self.home(slug) / "state" / f"plain-round-{number}.npy")


# The attacks here wait through whole v2 rounds, phases and deadlines included.
until = partial(wait_until, timeout=300)


@pytest.fixture(scope="module")
def secagg_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePortal]:
    import os

    database_url, _ = _fresh_database(os.environ.get("DATABASE_URL"))
    if not database_url:
        pytest.skip("the operator's SQL powers are exercised on PostgreSQL (make test runs it)")
    var_dir = tmp_path_factory.mktemp("secagg-portal")
    env = portal_env(
        var_dir,
        database_url=database_url,
        CONSORTIUM_FAULT_SLEEP_IN_AGGREGATION=PUBLISH_PAUSE,
    )
    password = secrets.token_urlsafe(16)
    options = PortalOptions(scheduler_metrics_port=free_port(), multiproc_dir=var_dir / "prom")
    with running_portal(env, password, options) as portal:
        yield LivePortal(portal.url, env, var_dir, password, database_url)


def _policy(op: OperatorClient, name: str, min_banks: int) -> dict[str, Any]:
    return op.policy_create(
        name=name,
        active=False,
        min_banks=min_banks,
        local_epochs=1,
        batch_size=512,
        learning_rate=3e-3,
        max_rounds=20,
        max_consecutive_failures=50,
        deadline_seconds=DEADLINE,
        normalize_features=False,
        model_spec=SPEC,
        ckks_params=CkksParams().to_dict(),
        secure_aggregation="v2",
        aggregate_checkers=0,  # every node recomputes the sum before decrypting
    )


@pytest.fixture(scope="module")
def fed(secagg_portal: LivePortal, tmp_path_factory: pytest.TempPathFactory) -> Fed:
    work = tmp_path_factory.mktemp("secagg")
    generate_world(work / "data", n_banks=len(SLUGS), preset="tiny", seed=5)
    params = CkksParams()
    fingerprint = ckks_keygen(work / "ceremony", params)
    url = secagg_portal.url
    op = OperatorClient(url, "operator", secagg_portal.operator_password)
    op.key_epoch_register(
        base64.b64encode((work / "ceremony" / PUBLIC_CONTEXT).read_bytes()).decode(),
        params.to_dict(),
    )
    policies = {"three": _policy(op, "three", 3), "four": _policy(op, "four", 4)}
    banks = []
    for slug, csv in zip(SLUGS, sorted((work / "data").glob("bank_*.csv")), strict=True):
        bank = ceremony.bank_prepare(work / slug, work / "ceremony", op)
        bank.client(url).register_signing_key(bank.member().signing_key)
        (bank.home / "node.toml").write_text(
            f'portal_url = "{url}"\nbank = "{slug}"\ncredential_file = "credential"\n'
            f'signing_key_file = "signing.key"\nsecret_context_file = "{SECRET_CONTEXT}"\n'
            f'ckks_params_file = "{PARAMS}"\ndata_file = "{csv}"\nstate_dir = "state"\n'
            f'genesis_file = "{ceremony.GENESIS_FILE}"\nmax_retries = 2\n'
            "keep_plaintext_updates = true\n"
        )
        banks.append(bank)
    draft = ceremony.draft_genesis(
        CONSORTIUM,
        banks,
        key_epoch=fingerprint,
        policies=[ceremony.approval_of(p) for p in policies.values()],
    )
    genesis = ceremony.found(url, op, banks, draft)
    for bank in banks:
        ceremony.write_genesis(genesis, bank.home / ceremony.GENESIS_FILE)
    agents = {b.slug: agent_from_config(load_config(b.home / "node.toml")) for b in banks}
    op.policy_activate(policies["three"]["id"])
    return Fed(secagg_portal, op, work, agents, policies, fingerprint)


def _run_round(
    fed: Fed,
    after: int,
    *,
    drop: tuple[str, ...] = (),
    at_unmasking: Callable[[int], None] | None = None,
) -> int:
    """One v2 round: everyone shares keys, the ``drop`` banks vanish before uploading."""
    number = fed.next_round(after)
    stay = tuple(s for s in SLUGS if s not in drop)

    def sharing() -> list[str]:
        # A dropped bank is stepped only until its mask key is in: stepped again once the
        # round has opened (mid-way through a pass over the banks), it would train and upload.
        return [s for s in SLUGS if s not in drop or not _advertised(fed, number, s)]

    until(lambda: fed.state(number) != "sharing" or fed.step(*sharing()))
    assert fed.state(number) == "open", fed.sql(
        "SELECT failure_reason FROM rounds_round WHERE number = %s", number
    )

    def waiting() -> list[str]:
        return [s for s in stay if str(number) not in fed.agents[s].state.submitted]

    until(lambda: not waiting() or fed.step(*waiting()))
    assert not [s for s in drop if str(number) in fed.agents[s].state.submitted]
    if at_unmasking is not None:
        until(lambda: fed.state(number) != "open", timeout=DEADLINE * 2)
        at_unmasking(number)
    # The dropped banks' deadline passes; the survivors reveal; the sum is published.
    fed.step_until_done(number, stay, timeout=DEADLINE * 3)
    assert fed.state(number) == "published", fed.sql(
        "SELECT failure_reason FROM rounds_round WHERE number = %s", number
    )
    return number


def _advertised(fed: Fed, number: int, slug: str) -> bool:
    return bool(
        fed.sql(
            "SELECT 1 FROM rounds_maskkey k JOIN rounds_round r ON r.id = k.round_id "
            "JOIN members_bank b ON b.id = k.bank_id WHERE r.number = %s AND b.slug = %s",
            number,
            slug,
        )
    )


def _fedavg(fed: Fed, number: int) -> tuple[np.ndarray, float]:
    secret, _ = fed.kits()
    path = fed.work / f"aggregate-{number}.ckks"
    fed.client("alpha").download_aggregate(number, path)
    with open(path, "rb") as stream:
        return unpack_aggregate(decrypt_vector2(secret, stream))


def _plain_fedavg(fed: Fed, number: int, banks: tuple[str, ...]) -> tuple[np.ndarray, float]:
    summed = np.sum([fed.plain(s, number) for s in banks], axis=0)
    return summed[:-2] / summed[-2], float(summed[-2])


# --- the rounds, in order (module-scoped federation) ------------------------------------


@pytest.fixture(scope="module")
def full_round(fed: Fed) -> int:
    return _run_round(fed, 0)


LATE: dict[str, Any] = {}


def _late_upload(fed: Fed, number: int) -> None:
    """delta, declared dropped, uploads once the round is unmasking (a signed, real-looking
    upload: the portal refuses it on the round's state before reading the body)."""
    LATE["state"] = fed.state(number)
    body = fed.work / "late.ckks"
    body.write_bytes(b"CKKSVEC2" + secrets.token_bytes(4096))
    digest = hashlib.sha256(body.read_bytes()).hexdigest()
    delta = fed.agents["delta"]
    signature = sign(delta.keys.signing_key, update_message_v2(number, "delta", digest, None, None))
    try:
        delta.client.upload_update(number, body, digest, signature)
    except PortalError as exc:
        LATE["refusal"] = exc


@pytest.fixture(scope="module")
def two_dropouts(fed: Fed, full_round: int) -> int:
    return _run_round(
        fed,
        full_round,
        drop=("delta", "epsilon"),
        at_unmasking=lambda number: _late_upload(fed, number),
    )


def test_a_round_with_every_bank_publishes_the_exact_fedavg(fed, full_round):
    avg, total = _fedavg(fed, full_round)
    expected, expected_total = _plain_fedavg(fed, full_round, SLUGS)
    assert total == expected_total
    assert np.max(np.abs(avg - expected)) < 1e-6
    record = fed.record(full_round)
    assert record.survivors == SLUGS_SORTED and record.dropped == ()
    assert len(record.reveals) >= record.threshold == 3


SLUGS_SORTED = tuple(sorted(SLUGS))


def test_n_minus_min_banks_dropouts_still_publish_the_exact_fedavg_of_the_survivors(
    fed, two_dropouts
):
    survivors = ("alpha", "beta", "gamma")
    avg, total = _fedavg(fed, two_dropouts)
    expected, expected_total = _plain_fedavg(fed, two_dropouts, survivors)
    assert total == expected_total
    assert np.max(np.abs(avg - expected)) < 1e-6
    record = fed.record(two_dropouts)
    assert record.survivors == survivors and record.dropped == ("delta", "epsilon")
    # The dropped banks' mask keys were revealed, their self-mask seeds never: a late upload
    # of theirs stays hidden behind a seed nobody holds.
    for reveal in record.reveals:
        assert set(reveal.key_shares) == {"delta", "epsilon"}
        assert not {"delta", "epsilon"} & set(reveal.seed_shares)


def test_a_dropped_banks_late_upload_is_refused(fed, two_dropouts):
    assert LATE["state"] == "unmasking"
    refusal = LATE.get("refusal")
    assert isinstance(refusal, PortalError), "the late upload was accepted"
    assert refusal.status == 409 and "declared dropped" in refusal.message
    assert fed.count("rounds_submission", two_dropouts) == 3


def test_members_can_download_survivors_masked_uploads_which_decrypt_to_noise(fed, full_round):
    secret, _ = fed.kits()
    path = fed.work / "alpha-masked.ckks"
    digest = fed.client("beta").download_submission(full_round, "alpha", path)
    manifest = fed.info(full_round).manifest
    assert manifest is not None
    assert digest == next(i.digest for i in manifest.inputs if i.bank == "alpha")
    with open(path, "rb") as stream:
        masked = decrypt_vector2(secret, stream)
    truth = fed.plain("alpha", full_round)
    # Masks uniform modulo a 60-bit prime decode to values around 2^31, not weights.
    assert np.median(np.abs(masked - truth)) > 1e3


def test_a_substituted_aggregate_is_refused_by_every_node_which_keeps_its_model(fed, two_dropouts):
    number = fed.next_round(two_dropouts)
    until(lambda: fed.state(number) != "sharing" or fed.step(*SLUGS))
    until(lambda: fed.state(number) == "unmasking" or fed.step(*SLUGS))
    # Step each survivor until its reveal is in, then stop: the scheduler pauses before it
    # publishes, so no node has used the aggregate when the operator replaces it.
    survivors = fed.sql("SELECT survivors FROM rounds_round WHERE number = %s", number)[0][0]
    assert len(survivors) >= 3
    before = {s: set(fed.agents[s].state.evaluated) for s in survivors}

    def revealed(slug: str) -> bool:
        return bool(
            fed.sql(
                "SELECT 1 FROM rounds_sharereveal t JOIN rounds_round r ON r.id = t.round_id "
                "JOIN members_bank b ON b.id = t.bank_id WHERE r.number = %s AND b.slug = %s",
                number,
                slug,
            )
        )

    for slug in survivors:

        def done(s: str = slug) -> bool:
            return revealed(s) or fed.step(s)

        until(done)
    until(lambda: fed.state(number) == "published", timeout=60)
    assert not any(str(number) in fed.agents[s].state.evaluated for s in survivors)
    # The operator publishes alpha's masked upload as "the aggregate" (a consistent digest).
    relpath = fed.sql("SELECT aggregate_blob FROM rounds_round WHERE number = %s", number)[0][0]
    alpha = fed.work / "alpha-sub.ckks"
    fed.client("beta").download_submission(number, survivors[0], alpha)
    forged = alpha.read_bytes()
    (fed.portal.var_dir / "blobs" / relpath).write_bytes(forged)
    digest = hashlib.sha256(forged).hexdigest()
    manifest = fed.sql("SELECT manifest FROM rounds_round WHERE number = %s", number)[0][0]
    manifest["aggregate_digest"] = digest
    fed.sql(
        "UPDATE rounds_round SET aggregate_digest=%s, aggregate_size=%s, manifest=%s "
        "WHERE number=%s",
        digest,
        len(forged),
        json.dumps(manifest),
        number,
    )
    time.sleep(2 * STATUS_CACHE_SECONDS + 0.5)  # an answer is at most 2 x that old
    fed.step_until_done(number, tuple(survivors), timeout=120)
    for slug in survivors:
        agent = fed.agents[slug]
        assert str(number) in agent.state.refused
        assert str(number) not in agent.state.evaluated
        assert set(agent.state.evaluated) == before[slug]  # the last good model is kept
    objections = fed.sql(
        "SELECT b.slug, o.reason_code FROM governance_objection o "
        "JOIN members_bank b ON b.id = o.bank_id"
    )
    substituted = {slug for slug, code in objections if code == "aggregate_substituted"}
    assert set(survivors) <= substituted


# --- collusion: the operator's database and blobs, a member's CKKS key, k colluding banks --


@pytest.fixture(scope="module")
def threshold_four_round(fed: Fed, two_dropouts: int) -> int:
    fed.op.policy_activate(fed.policies["four"]["id"])
    # Whatever round opened under "three" meanwhile runs to its end first (nodes that
    # refused its base sit it out and it fails at its sharing deadline).
    last = int(fed.sql("SELECT max(number) FROM rounds_round")[0][0])
    until(
        lambda: fed.state(last) in ("published", "failed") or fed.step(*SLUGS),
        timeout=DEADLINE * 3,
    )
    return _run_round(fed, last)


def _colluders_unmask(fed: Fed, number: int, target: str, colluders: tuple[str, ...]) -> Any:
    """What ``colluders`` (their node state dirs and keys), the operator (database, blobs,
    the published record) and any member's CKKS secret key can do against ``target``."""
    binding = fed.binding(number)
    record = fed.record(number)
    advertised = {k.bank: k for k in record.keys}
    target_public = X25519PublicKey.from_public_bytes(
        base64.b64decode(advertised[target].mask_public_key)
    )
    # 1. The pair masks between the target and each colluder (from the colluder's own key).
    terms = []
    for bank in colluders:
        stored = round_file_if_any(fed.home(bank) / "state", number)
        assert stored is not None, f"{bank} kept no secrets for round {number}"
        mine = X25519PrivateKey.from_private_bytes(base64.b64decode(stored.mask_key))
        seed = pairwise_seed(mine, bank, target_public, target, binding)
        terms.append(MaskTerm(bank, seed, -pair_sign(target, bank)))
    # 2. The target's self-mask seed: the published reveals carry t shares of it.
    seed_shares = [
        Share.from_bytes(base64.b64decode(r.seed_shares[target])) for r in record.reveals
    ]
    terms.append(MaskTerm(target, recover_self_seed(seed_shares[: record.threshold]), -1))
    # 3. The shares of the target's mask key sealed to the colluders (in the operator's DB).
    boxes = fed.sql(
        "SELECT m.shares FROM rounds_maskkey m JOIN rounds_round r ON r.id = m.round_id "
        "JOIN members_bank b ON b.id = m.bank_id WHERE r.number = %s AND b.slug = %s",
        number,
        target,
    )[0][0]
    key_shares = []
    for bank in colluders:
        own = X25519PrivateKey.from_private_bytes((fed.home(bank) / AGREEMENT_KEY).read_bytes())
        sender = X25519PublicKey.from_public_bytes(
            base64.b64decode((fed.home(target) / "agreement.pub").read_text().strip())
        )
        payload = open_share(own, bank, sender, target, base64.b64decode(boxes[bank]), binding)
        key_shares.append(key_share(payload))
        seed_shares.append(seed_share(payload))
    secret, public = fed.kits()
    path = fed.work / f"{target}-{number}.ckks"
    fed.client(colluders[0]).download_submission(number, target, path)
    out = io.BytesIO()
    sum_vectors2([path], public, out, masker_for(public, terms, binding))
    guess = decrypt_vector2(secret, io.BytesIO(out.getvalue()))
    return guess, key_shares, base64.b64decode(advertised[target].mask_public_key)


def test_operator_plus_n_minus_2_banks_cannot_recover_a_banks_update(fed, threshold_four_round):
    number = threshold_four_round
    assert fed.record(number).threshold == 4
    guess, key_shares, public = _colluders_unmask(
        fed, number, "alpha", ("gamma", "delta", "epsilon")
    )
    truth = fed.plain("alpha", number)
    # beta's pair mask is still on: the guess is noise, nowhere near the update.
    assert np.median(np.abs(guess - truth)) > 1e3
    # And three shares of alpha's mask key (threshold four) do not rebuild it.
    with pytest.raises(HEError):
        recover_agreement_key(key_shares, public)


def test_with_n_minus_1_colluding_banks_the_update_falls_as_in_any_aggregation(
    fed, threshold_four_round
):
    number = threshold_four_round
    colluders = ("beta", "gamma", "delta", "epsilon")
    guess, key_shares, public = _colluders_unmask(fed, number, "alpha", colluders)
    truth = fed.plain("alpha", number)
    assert np.max(np.abs(guess - truth)) < 1e-3 * max(1.0, float(np.max(np.abs(truth))))
    recover_agreement_key(key_shares, public)  # four shares: the threshold is reached

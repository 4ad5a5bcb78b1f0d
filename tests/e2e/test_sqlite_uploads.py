"""The embedded default holds: six banks uploading at once to a portal on SQLite get no 503."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bank_node.portal_client import BankClient, OperatorClient, PortalError
from he.signing import public_key_b64, sign, update_message
from protocol import RoundInfo, UpdateReceipt
from simulation.processes import OPERATOR, PortalOptions, portal_env, running_portal
from tests.conftest import PARAMS, Ckks, encrypted_update

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BANKS = [f"bank-{i}" for i in range(6)]
ROUNDS = 2
SMALL_MODEL = {"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"}


@pytest.fixture(scope="module")
def sqlite_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """A live portal (two gunicorn workers and the scheduler) on the embedded SQLite default."""
    var_dir = tmp_path_factory.mktemp("sqlite-portal")
    env = portal_env(var_dir)  # no database_url: SQLite under var_dir, whatever the caller uses
    password = secrets.token_urlsafe(16)
    options = PortalOptions(multiproc_dir=var_dir / "prometheus", scheduler_interval=0.3)
    with running_portal(env, password, options) as portal:
        yield portal.url, password, var_dir


def _federate(url: str, password: str, ckks: Ckks) -> dict[str, tuple[str, Ed25519PrivateKey]]:
    op = OperatorClient(url, OPERATOR, password)
    op.key_epoch_register(base64.b64encode(ckks.public_bytes).decode(), PARAMS.to_dict())
    banks = {}
    for slug in BANKS:
        credential = op.bank_create(slug)["credential"]
        key = Ed25519PrivateKey.generate()
        BankClient(url, credential).register_signing_key(public_key_b64(key))
        banks[slug] = (credential, key)
    op.policy_create(
        name="sqlite-six",
        active=True,
        min_banks=3,
        deadline_seconds=120,
        max_rounds=ROUNDS,
        normalize_features=False,
        model_spec=SMALL_MODEL,
        ckks_params=PARAMS.to_dict(),
        secure_aggregation="v1",
    )
    return banks


def _open_round(client: BankClient, after: int) -> RoundInfo:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rnd = client.current_round()
        if rnd is not None and rnd.state == "open" and rnd.number > after:
            return rnd
        time.sleep(0.2)
    raise AssertionError(f"no round after {after} opened within 60s")


def _upload_all(
    url: str, banks: dict[str, tuple[str, Ed25519PrivateKey]], rnd: RoundInfo, ckks: Ckks, out: Path
) -> dict[str, Any]:
    """Every bank polls, then all upload at the same moment; no client retries a 5xx."""
    barrier = threading.Barrier(len(banks))

    def one(item: tuple[int, str]) -> tuple[str, Any]:
        i, slug = item
        credential, key = banks[slug]
        body, _ = encrypted_update(ckks, rnd.vector_length, seed=rnd.number * 10 + i)
        path = out / f"{slug}-{rnd.number}.ckks"
        path.write_bytes(body)
        digest = hashlib.sha256(body).hexdigest()
        signature = sign(key, update_message(rnd.number, slug, digest))
        client = BankClient(url, credential, max_retries=0)
        barrier.wait()
        try:
            client.current_round()  # as a node does just before it uploads
            return slug, client.upload_update(rnd.number, path, digest, signature)
        except PortalError as exc:
            return slug, exc

    with ThreadPoolExecutor(max_workers=len(banks)) as pool:
        return dict(pool.map(one, enumerate(banks)))


def test_six_banks_uploading_at_once_to_the_sqlite_portal_never_get_a_503(
    sqlite_portal: tuple[str, str, Path], ckks: Ckks, tmp_path: Path
) -> None:
    url, password, var_dir = sqlite_portal
    banks = _federate(url, password, ckks)
    watcher = BankClient(url, banks[BANKS[0]][0])
    last = 0
    for _ in range(ROUNDS):
        rnd = _open_round(watcher, last)
        results = _upload_all(url, banks, rnd, ckks, tmp_path)
        refused = {slug: str(r) for slug, r in results.items() if not isinstance(r, UpdateReceipt)}
        assert refused == {}, refused
        last = rnd.number
    gunicorn_log = (var_dir / "gunicorn.log").read_text(errors="replace")
    assert "database is locked" not in gunicorn_log

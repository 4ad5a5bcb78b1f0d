"""Shared fixtures: named personas, a real CKKS key epoch, and an open round."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import tenseal as ts
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from he.codec import TRAILER_SLOTS, encrypt_vector, pack_update
from he.keys import fingerprint, generate_secret_context, public_context_bytes
from he.params import CkksParams
from he.signing import public_key_b64, sign, update_message, update_message_v2
from tests.xdist_plan import (  # noqa: F401 - the suite on both cores: hooks found by name
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_xdist_make_scheduler,
)

# The SQLite pass leaves out the tests that touch no database (--database-tests-only).
pytest_plugins = ("tests.passes",)

PARAMS = CkksParams()


@dataclass
class Ckks:
    secret: ts.Context
    public_bytes: bytes
    fingerprint: str


@pytest.fixture(scope="session")
def ckks() -> Ckks:
    secret = generate_secret_context(PARAMS)
    public = public_context_bytes(secret)
    return Ckks(secret, public, fingerprint(public))


@pytest.fixture(autouse=True)
def _blob_dir(settings: Any, tmp_path: Any) -> None:
    settings.BLOB_DIR = tmp_path / "blobs"
    # In-process tests change rounds and banks and read them back at once: no status
    # caching, no cached credentials (tests/security/test_auth_cache.py turns it on).
    settings.STATUS_CACHE_SECONDS = 0
    settings.AUTH_CACHE_SECONDS = 0


@dataclass
class Persona:
    """A bank as its node sees itself: the row, its credential and its signing key."""

    bank: Any
    credential: str
    key: Ed25519PrivateKey

    @property
    def slug(self) -> str:
        return str(self.bank.slug)

    def auth(self) -> dict[str, Any]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.credential}"}


def make_bank(slug: str, *, with_key: bool = True) -> Persona:
    from consortium.members.services import bank_create

    key = Ed25519PrivateKey.generate()
    bank, credential = bank_create(
        slug=slug,
        name=slug.title(),
        actor="test",
        signing_public_key=public_key_b64(key) if with_key else "",
    )
    return Persona(bank, credential, key)


@pytest.fixture
def bank_alpha(db: Any) -> Persona:
    return make_bank("alpha")


@pytest.fixture
def bank_beta(db: Any) -> Persona:
    return make_bank("beta")


@pytest.fixture
def bank_gamma(db: Any) -> Persona:
    return make_bank("gamma")


@pytest.fixture
def bank_delta(db: Any) -> Persona:
    return make_bank("delta")


@pytest.fixture
def operator(db: Any) -> Any:
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user("olivia", password="operator-password-1")
    user.groups.add(Group.objects.get_or_create(name="operators")[0])
    return user


@pytest.fixture
def auditor(db: Any) -> Any:
    from django.contrib.auth.models import Group, User

    user = User.objects.create_user("audrey", password="auditor-password-1")
    user.groups.add(Group.objects.get_or_create(name="auditors")[0])
    return user


@pytest.fixture
def epoch(db: Any, ckks: Ckks) -> Any:
    from consortium.rounds.services import key_epoch_register

    return key_epoch_register(
        public_context=ckks.public_bytes, ckks_params=PARAMS.to_dict(), actor="test"
    )


@pytest.fixture
def policy(db: Any) -> Any:
    from datetime import timedelta

    from consortium.rounds.services import policy_create

    return policy_create(
        name="default",
        actor="test",
        activate=True,
        min_banks=3,
        deadline=timedelta(minutes=10),
        max_rounds=3,
        normalize_features=False,
        model_spec={"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"},
        # The v1 upload path; v2 rounds have their own fixtures (tests/consortium/secagg).
        secure_aggregation="v1",
    )


@pytest.fixture
def open_round(
    epoch: Any, policy: Any, bank_alpha: Persona, bank_beta: Persona, bank_gamma: Persona
) -> Any:
    from django.utils import timezone

    from consortium.rounds.selectors import round_in_flight
    from consortium.rounds.services import round_open_next

    round_open_next(timezone.now())
    rnd = round_in_flight()
    assert rnd is not None
    return rnd


def encrypted_update(
    ckks: Ckks,
    length: int,
    *,
    seed: int = 0,
    n: int = 100,
    fp: str | None = None,
    secret: ts.Context | None = None,
    tag: float = 1.5,
) -> tuple[bytes, np.ndarray]:
    """A real encrypted ``[n*w, n, tag]`` of total ``length`` values, and its plaintext.

    The portal never reads the tag, so any value in [1, 2) stands in for a bank's.
    """
    weights = np.random.default_rng(seed).normal(0, 0.3, length - TRAILER_SLOTS)
    values = pack_update(weights, n, tag)
    buf = io.BytesIO()
    encrypt_vector(secret or ckks.secret, values, PARAMS, fp or ckks.fingerprint, buf)
    return buf.getvalue(), values


def upload_headers(
    persona: Persona,
    round_number: int,
    body: bytes,
    *,
    signer: Persona | None = None,
    epsilon: str | None = None,
    budget_left: str | None = None,
) -> dict[str, Any]:
    """Headers of a signed upload; a privacy claim given here is sent and signed (v2)."""
    import hashlib

    digest = hashlib.sha256(body).hexdigest()
    key = (signer or persona).key
    claim = {"HTTP_X_PRIVACY_EPSILON": epsilon, "HTTP_X_PRIVACY_BUDGET_LEFT": budget_left}
    message = update_message(round_number, persona.slug, digest)
    if epsilon is not None or budget_left is not None:
        message = update_message_v2(
            round_number,
            persona.slug,
            digest,
            None if epsilon is None else _float_or_none(epsilon),
            None if budget_left is None else budget_left == "true",
        )
    return {
        **persona.auth(),
        "HTTP_X_UPDATE_DIGEST": digest,
        "HTTP_X_UPDATE_SIGNATURE": sign(key, message),
        "CONTENT_TYPE": "application/octet-stream",
        **{name: value for name, value in claim.items() if value is not None},
    }


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # a malformed header the portal refuses before any signature check


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()

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

from he.codec import encrypt_vector, pack_update
from he.keys import fingerprint, generate_secret_context, public_context_bytes
from he.params import CkksParams
from he.signing import public_key_b64, sign, update_message

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
    # In-process tests change rounds and read them back at once: no status caching.
    settings.STATUS_CACHE_SECONDS = 0


@dataclass
class Persona:
    """A bank as its node sees itself: the row, its credential and its signing key."""

    bank: Any
    credential: str
    key: Ed25519PrivateKey

    @property
    def slug(self) -> str:
        return str(self.bank.slug)

    def auth(self) -> dict[str, str]:
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
) -> tuple[bytes, np.ndarray]:
    """A real encrypted ``[n*w, n]`` of total ``length`` values, and its plaintext."""
    weights = np.random.default_rng(seed).normal(0, 0.3, length - 1)
    values = pack_update(weights, n)
    buf = io.BytesIO()
    encrypt_vector(secret or ckks.secret, values, PARAMS, fp or ckks.fingerprint, buf)
    return buf.getvalue(), values


def upload_headers(
    persona: Persona, round_number: int, body: bytes, *, signer: Persona | None = None
) -> dict[str, str]:
    import hashlib

    digest = hashlib.sha256(body).hexdigest()
    key = (signer or persona).key
    return {
        **persona.auth(),
        "HTTP_X_UPDATE_DIGEST": digest,
        "HTTP_X_UPDATE_SIGNATURE": sign(key, update_message(round_number, persona.slug, digest)),
        "CONTENT_TYPE": "application/octet-stream",
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()

"""Portal-side roster fixtures: four onboarded founding banks, the API calls they make."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from governance import (
    Charter,
    PolicyApproval,
    PrivacyFloor,
    RosterVersion,
    Rule,
    genesis_version,
    sign_version,
)
from tests.conftest import Persona
from tests.governance.roster_helpers import NOW, Bank, new_bank

FOUNDER_IDS = ("alpha", "beta", "gamma", "delta")
OPERATOR_PASSWORD = "operator-password-1"


@dataclass
class Founder:
    """A bank as the portal knows it (row, API credential) and as only it knows itself (keys)."""

    keys: Bank
    persona: Persona

    @property
    def slug(self) -> str:
        return self.keys.bank_id

    def auth(self) -> dict[str, Any]:
        return self.persona.auth()


def onboard(bank_id: str) -> Founder:
    from consortium.members.services import bank_create

    keys = new_bank(bank_id)
    row, credential = bank_create(
        slug=bank_id, name=keys.name, actor="test", signing_public_key=keys.public
    )
    return Founder(keys, Persona(row, credential, keys.key))


def basic(username: str, password: str) -> dict[str, Any]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def post(client: Client, path: str, body: Any, headers: dict[str, Any]) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json", **headers)


def charter(
    founders: dict[str, Founder], *, epochs: tuple[str, ...] = (), policies: tuple = ()
) -> Charter:
    return Charter(
        consortium_id="acme",
        members=tuple(f.keys.member() for f in founders.values()),
        rule=Rule(2, 3, 2),
        min_banks=3,
        key_epochs=epochs or ("ab" * 32,),
        privacy=PrivacyFloor(dp_required=False, epsilon_ceiling=None),
        policies=tuple(PolicyApproval(*p) for p in policies),
    )


def pending_version(client: Client, headers: dict[str, Any]) -> RosterVersion:
    """The pending version as a bank node fetches it, ready to sign."""
    pending = client.get("/api/v1/roster", **headers).json()["pending"]
    assert len(pending) == 1, pending
    return RosterVersion.from_dict(pending[0]["version"])


def approve(client: Client, founder: Founder, number: int | None = None) -> Any:
    """``founder`` signs the pending version with its own key and sends the signature."""
    version = pending_version(client, founder.auth())
    signature = sign_version(version, founder.slug, founder.keys.key)
    path = f"/api/v1/roster/versions/{number if number is not None else version.number}"
    return post(client, f"{path}/signatures", {"signature": signature}, founder.auth())


def propose(client: Client, body: dict[str, Any]) -> Any:
    return post(client, "/api/v1/roster/proposals", body, basic("olivia", OPERATOR_PASSWORD))


def found(client: Client, founders: dict[str, Founder], **charter_args: Any) -> None:
    """The founding ceremony through the API: the operator drafts, every founder signs."""
    draft = genesis_version(charter(founders, **charter_args), NOW)
    assert propose(client, {"genesis": draft.to_dict()}).status_code == 201
    for founder in founders.values():
        assert approve(client, founder).status_code == 200


@pytest.fixture
def founders(db: Any, settings: Any) -> dict[str, Founder]:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return {bank_id: onboard(bank_id) for bank_id in FOUNDER_IDS}


@pytest.fixture
def founded(client: Client, founders: dict[str, Founder], operator: Any) -> dict[str, Founder]:
    found(client, founders)
    return founders

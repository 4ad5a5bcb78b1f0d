"""A bank node's real HTTP client against the real portal: it pins, verifies, approves, objects.

The node's ``requests`` session is routed into Django's test client by a transport
adapter, so every request goes through the portal's URLs, authentication, views and
services in the test's database transaction (a live server would need a transactional
database, which the append-only audit tables forbid to flush on SQLite).
"""

from __future__ import annotations

import json
from typing import Any

from django.test import Client
from portal_helpers import Founder, approve, propose

from bank_node.objections import Objector
from bank_node.portal_client import BankClient
from bank_node.roster import RosterKeeper
from governance import sign_version
from tests.portal_transport import DjangoTransport


def _client(client: Client, founder: Founder) -> BankClient:
    portal = BankClient("http://testserver", founder.persona.credential, max_retries=0)
    portal.session.mount("http://testserver", DjangoTransport(client))
    return portal


def _node(
    client: Client, founder: Founder, tmp_path: Any
) -> tuple[RosterKeeper, BankClient, Objector]:
    portal = _client(client, founder)
    # The genesis every founder signed, handed to the node out of band (here: from the test).
    genesis = portal.roster()["versions"][0]["version"]
    (tmp_path / "genesis.json").write_text(json.dumps(genesis))
    keeper = RosterKeeper(tmp_path / "genesis.json", tmp_path)
    objector = Objector(portal, founder.slug, founder.keys.key, lambda: keeper.state.consortium_id)
    return keeper, portal, objector


def test_a_node_verifies_a_change_the_banks_approved_on_the_portal(client, founded, tmp_path):
    keeper, portal, objector = _node(client, founded["alpha"], tmp_path)
    assert (
        propose(client, {"change": {"kind": "change_min_banks", "min_banks": 4}}).status_code == 201
    )
    for bank in ("beta", "gamma", "delta"):
        assert approve(client, founded[bank]).status_code == 200
    assert keeper.refresh(portal, objector) == 1
    assert (keeper.state.version, keeper.state.min_banks) == (1, 4)


def test_a_node_approves_a_pending_change_over_http(client, founded, tmp_path):
    keeper, portal, _ = _node(client, founded["alpha"], tmp_path)
    propose(client, {"change": {"kind": "change_min_banks", "min_banks": 4}})
    ((version, pending),) = keeper.pending(portal)
    assert not isinstance(pending, str) and pending.missing_count == 3
    portal.sign_roster_version(
        version.number, sign_version(version, "alpha", founded["alpha"].keys.key)
    )
    signers = portal.roster()["pending"][0]["approvals"]["signed"]
    assert signers == ["alpha"]


def test_a_node_s_signed_objection_is_recorded_for_everyone_to_see(client, founded, tmp_path):
    _, _, objector = _node(client, founded["alpha"], tmp_path)
    objector.refuse(7, "policy_not_approved", "policy 'x' v1 is not approved in roster version 0")
    seen = _client(client, founded["beta"])._json("GET", "objections")
    rows = seen["results"] if isinstance(seen, dict) else seen
    assert [(r["bank"], r["reason_code"], r["round_number"]) for r in rows] == [
        ("alpha", "policy_not_approved", 7)
    ]

"""The node pins a genesis, verifies every later version itself and refuses the rest."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bank_node import metrics as node_metrics
from bank_node.objections import Objector
from bank_node.roster import ROSTER_FILE, PinError, RosterKeeper
from governance import ChangeMinBanks, RosterVersion, apply
from tests.bank_node.roster_fakes import (
    FakePortal,
    approve_policy,
    objection_verifies,
    policy,
    write_genesis,
)
from tests.governance.roster_helpers import Ceremony, found, new_bank, signed


@pytest.fixture
def ceremony() -> Ceremony:
    return found()


@pytest.fixture
def node(tmp_path, ceremony):
    portal = FakePortal()
    keeper = RosterKeeper(write_genesis(ceremony, tmp_path / "genesis.json"), tmp_path)
    objector = Objector(portal, "alpha", ceremony["alpha"].key, lambda: "acme")  # type: ignore[arg-type]  # a fake portal
    return keeper, portal, objector


def _v1(ceremony: Ceremony, *signers: str) -> RosterVersion:
    change = ChangeMinBanks(4)
    return signed(ceremony.propose(change), *(ceremony[s] for s in signers))


def _refusals(reason: str) -> float:
    return node_metrics.REFUSALS.labels(reason)._value.get()


def test_a_fully_signed_genesis_is_pinned_at_version_0(node, ceremony):
    keeper, _, _ = node
    assert keeper.state == ceremony.state
    keeper.check_names("alpha", ceremony["alpha"].public)
    assert node_metrics.ROSTER_PINNED._value.get() == 1


def test_a_genesis_missing_a_founder_s_signature_is_refused_at_start(tmp_path, ceremony):
    forged = dataclasses.replace(
        ceremony.genesis,
        signatures={k: v for k, v in ceremony.genesis.signatures.items() if k != "delta"},
    )
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(forged.to_dict()))
    with pytest.raises(PinError, match="delta"):
        RosterKeeper(path, tmp_path)


def test_a_genesis_that_does_not_name_this_bank_with_this_key_is_refused(node, ceremony):
    keeper, _, _ = node
    with pytest.raises(PinError, match="does not name bank 'epsilon'"):
        keeper.check_names("epsilon", new_bank("epsilon").public)
    with pytest.raises(PinError, match="another key"):
        keeper.check_names("alpha", new_bank("alpha").public)


def test_a_properly_approved_version_is_verified_stored_and_reverified_on_start(
    node, ceremony, tmp_path
):
    keeper, portal, objector = node
    portal.versions = [
        ceremony.genesis.to_dict(),
        {"version": _v1(ceremony, "alpha", "beta", "gamma").to_dict()},
    ]
    assert keeper.refresh(portal, objector) == 1
    assert (keeper.state.version, keeper.state.min_banks) == (1, 4)
    again = RosterKeeper(tmp_path / "genesis.json", tmp_path)
    assert again.state == keeper.state
    assert portal.objections == []


def test_a_roster_file_edited_on_disk_is_not_believed(node, ceremony, tmp_path):
    keeper, portal, objector = node
    portal.versions = [_v1(ceremony, "alpha", "beta", "gamma").to_dict()]
    keeper.refresh(portal, objector)
    stored = json.loads((tmp_path / ROSTER_FILE).read_text())
    stored["versions"][0]["change"]["min_banks"] = 3 + 97  # signatures no longer match
    (tmp_path / ROSTER_FILE).write_text(json.dumps(stored))
    assert RosterKeeper(tmp_path / "genesis.json", tmp_path).state.version == 0


def test_an_under_signed_version_is_refused_with_a_signed_objection(node, ceremony):
    keeper, portal, objector = node
    before = _refusals("roster_invalid")
    portal.versions = [_v1(ceremony, "alpha", "beta").to_dict()]  # 2 of the 3 needed
    assert keeper.refresh(portal, objector) == 0
    assert keeper.state.version == 0
    assert portal.reasons() == ["roster_invalid"]
    objection, signature = portal.objections[0]
    assert "valid approval(s) of 3 needed" in objection["message"]
    assert objection_verifies(objection, signature, ceremony["alpha"].public)
    assert _refusals("roster_invalid") == before + 1


def test_a_version_signed_by_an_outsider_does_not_count(node, ceremony):
    keeper, portal, objector = node
    sham = new_bank("sham")
    version = _v1(ceremony, "alpha", "beta")
    version = version.with_signature("sham", sham.sign(version).signatures["sham"])
    portal.versions = [version.to_dict()]
    keeper.refresh(portal, objector)
    assert keeper.state.version == 0 and "sham: not a member" in portal.objections[0][0]["message"]


def test_reordered_versions_are_refused(node, ceremony):
    keeper, portal, objector = node
    v1 = _v1(ceremony, "alpha", "beta", "gamma")
    state1 = apply(ceremony.state, v1)
    v2 = approve_policy(ceremony, state1, policy())
    portal.versions = [v2.to_dict(), v1.to_dict()]
    keeper.refresh(portal, objector)
    assert keeper.state.version == 0
    assert "reordered, replayed or missing" in portal.objections[0][0]["message"]


def test_a_different_version_replayed_under_a_held_number_is_refused_as_a_fork(node, ceremony):
    keeper, portal, objector = node
    portal.versions = [_v1(ceremony, "alpha", "beta", "gamma").to_dict()]
    keeper.refresh(portal, objector)
    other = signed(ceremony.propose(ChangeMinBanks(5)), ceremony["alpha"], ceremony["beta"])
    portal.versions = [other.to_dict()]
    keeper.refresh(portal, objector)
    assert keeper.state.min_banks == 4 and portal.reasons() == ["roster_fork"]


def test_the_same_refusal_is_objected_to_once_not_on_every_poll(node, ceremony):
    keeper, portal, objector = node
    portal.versions = [_v1(ceremony, "alpha").to_dict()]
    for _ in range(3):
        keeper.refresh(portal, objector)
    assert len(portal.objections) == 1

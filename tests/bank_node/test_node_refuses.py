"""An honest node facing a misbehaving operator: it says no, says why, and keeps polling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bank_node.agent import Agent
from bank_node.config import NodeConfig
from bank_node.keys import PARAMS, SECRET_CONTEXT, SIGNING_KEY, ckks_keygen, keyring_load
from bank_node.roster import RosterKeeper
from governance import apply
from he.params import CkksParams
from he.signing import private_key_bytes
from tests.bank_node.roster_fakes import (
    FakePortal,
    approve_policy,
    manifest,
    objection_verifies,
    policy,
    signed_input,
    training_round,
)
from tests.governance.roster_helpers import Ceremony, found, new_bank


@pytest.fixture(scope="module")
def ckks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckks")
    ckks_keygen(out, CkksParams())
    return out


@pytest.fixture
def ceremony() -> Ceremony:
    return found()


def _agent(
    tmp_path: Path, ckks_dir: Path, ceremony: Ceremony, portal: FakePortal, **config
) -> Agent:
    (tmp_path / SIGNING_KEY).write_bytes(private_key_bytes(ceremony["alpha"].key))
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps(ceremony.genesis.to_dict()))
    cfg = NodeConfig(
        portal_url="http://127.0.0.1:9",
        bank="alpha",
        credential_file=tmp_path / "none",
        signing_key_file=tmp_path / SIGNING_KEY,
        secret_context_file=ckks_dir / SECRET_CONTEXT,
        ckks_params_file=ckks_dir / PARAMS,
        data_file=tmp_path / "none.csv",
        state_dir=tmp_path / "state",
        genesis_file=genesis,
        **config,
    )
    keys = keyring_load(cfg.secret_context_file, cfg.ckks_params_file, cfg.signing_key_file)
    cfg.state_dir.mkdir()
    keeper = RosterKeeper(genesis, cfg.state_dir)
    return Agent(cfg, keys, portal, keeper)  # type: ignore[arg-type]  # the fake portal


def _epoch(agent: Agent) -> str:
    return agent.keys.fingerprint


def test_a_round_under_an_unapproved_policy_is_sat_out_with_a_signed_objection(
    tmp_path, ckks_dir, ceremony
):
    portal = FakePortal()
    agent = _agent(tmp_path, ckks_dir, ceremony, portal)
    # The operator activates DP-off under a name the banks never approved.
    portal.current = training_round(policy(dp_target_epsilon=None), key_epoch=_epoch(agent))
    agent.step()
    agent.step()  # keeps polling; the round stays refused, once
    assert portal.uploads == []
    assert "4" in agent.state.skipped and "not approved" in agent.state.skipped["4"]
    assert portal.reasons() == ["policy_not_approved"]
    objection, signature = portal.objections[0]
    assert objection["round_number"] == 4 and objection["consortium_id"] == "acme"
    assert objection_verifies(objection, signature, ceremony["alpha"].public)


def test_an_aggregate_naming_a_sham_bank_is_never_used(tmp_path, ckks_dir, ceremony):
    portal = FakePortal()
    agent = _agent(tmp_path, ckks_dir, ceremony, portal)
    snapshot = policy()
    portal.versions = [approve_policy(ceremony, ceremony.state, snapshot).to_dict()]
    ceremony.banks["sham"] = new_bank("sham")
    inputs = [signed_input(ceremony, b, 4) for b in ("alpha", "beta", "sham")]
    published = training_round(snapshot, state="published", manifest=manifest(4, inputs).to_dict())
    portal.detail = {4: published}
    portal.rounds_listed = [published]
    agent.state.submitted["4"] = "ab" * 32
    agent.step()
    assert "4" in agent.state.refused and "4" not in agent.state.evaluated
    assert portal.reasons() == ["cohort"]
    assert not (agent.config.state_dir / "global_model.npy").exists()


def test_a_round_under_an_epoch_the_roster_retired_is_refused_before_training(
    tmp_path, ckks_dir, ceremony
):
    portal = FakePortal()
    agent = _agent(tmp_path, ckks_dir, ceremony, portal)
    snapshot = policy()
    state = apply(ceremony.state, approve_policy(ceremony, ceremony.state, snapshot))
    portal.versions = [approve_policy(ceremony, ceremony.state, snapshot).to_dict()]
    assert state.version == 1
    # The node holds this epoch, but the roster never put it in force.
    portal.current = training_round(snapshot, key_epoch=_epoch(agent))
    agent.step()
    assert portal.uploads == [] and portal.reasons() == ["key_epoch_not_in_force"]


@pytest.mark.parametrize("opted_in", [False, True])
def test_per_bank_figures_travel_only_when_the_bank_opts_in_and_never_row_counts(
    tmp_path, ckks_dir, ceremony, opted_in
):
    portal = FakePortal()
    agent = _agent(tmp_path, ckks_dir, ceremony, portal, report_metrics=opted_in)
    figures = {
        "auprc": 0.4,
        "recall_at_0.5pct": 0.2,
        "f1": 0.3,
        "base_rate": 0.01,
        "test_rows": 900.0,
    }
    agent.report(4, figures)
    if not opted_in:
        assert portal.reported == []
    else:
        assert portal.reported == [(4, {"auprc": 0.4, "recall_at_0.5pct": 0.2, "f1": 0.3})]

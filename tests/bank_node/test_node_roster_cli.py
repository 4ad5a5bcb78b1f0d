"""`bank-node roster ...`: a bank reads, approves and rejects changes its node has verified."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bank_node import metrics as node_metrics
from bank_node import roster_cli
from bank_node.cli import _keeper, main
from bank_node.config import ConfigError, load_config
from bank_node.roster import PinError
from governance import ChangeMinBanks, clearance_message, genesis_version, verify_genesis
from he.signing import private_key_bytes, verify
from tests.bank_node.roster_fakes import FakePortal, objection_verifies
from tests.governance.roster_helpers import NOW, Ceremony, charter_of, found, new_bank, signed


@pytest.fixture
def ceremony() -> Ceremony:
    return found()


@pytest.fixture
def portal(monkeypatch) -> FakePortal:
    fake = FakePortal()
    monkeypatch.setattr(roster_cli, "BankClient", lambda *args, **kwargs: fake)
    return fake


def _config(tmp_path: Path, ceremony: Ceremony, bank: str = "alpha", genesis: bool = True) -> str:
    (tmp_path / "signing.key").write_bytes(private_key_bytes(ceremony[bank].key))
    (tmp_path / "credential").write_text("token")
    (tmp_path / "genesis.json").write_text(json.dumps(ceremony.genesis.to_dict()))
    pin = 'genesis_file = "genesis.json"\n' if genesis else ""
    (tmp_path / "node.toml").write_text(
        f'portal_url = "https://portal.example"\nbank = "{bank}"\ncredential_file = "credential"\n'
        'signing_key_file = "signing.key"\nsecret_context_file = "consortium.secret"\n'
        'ckks_params_file = "ckks_params.json"\ndata_file = "data.csv"\nstate_dir = "state"\n' + pin
    )
    return str(tmp_path / "node.toml")


def _pending(ceremony: Ceremony, *signers: str) -> dict:
    version = signed(ceremony.propose(ChangeMinBanks(4)), *(ceremony[s] for s in signers))
    return {"number": 1, "version": version.to_dict()}


def test_show_lists_the_verified_members_rule_and_floors(tmp_path, ceremony, portal, capsys):
    assert main(["roster", "show", "--config", _config(tmp_path, ceremony)]) == 0
    out = capsys.readouterr().out
    assert "consortium 'acme', roster version 0" in out
    assert "min_banks 3" in out and "DP required, ε ≤ 8.0" in out
    assert all(bank in out for bank in ("alpha", "beta", "gamma", "delta"))


def test_pending_says_what_the_change_does_who_signed_and_what_is_missing(
    tmp_path, ceremony, portal, capsys
):
    portal.pending = [_pending(ceremony, "beta")]
    assert main(["roster", "pending", "--config", _config(tmp_path, ceremony)]) == 0
    out = capsys.readouterr().out
    assert "Change min_banks from 3 to 4; needs 3 of 4 approvals" in out
    assert "signed: beta; not yet signed: alpha, gamma, delta" in out


def test_approve_signs_the_verified_pending_version_with_the_bank_s_key(
    tmp_path, ceremony, portal, capsys
):
    portal.pending = [_pending(ceremony, "beta")]
    assert main(["roster", "approve", "1", "--yes", "--config", _config(tmp_path, ceremony)]) == 0
    ((number, signature),) = portal.signatures
    version = ceremony.propose(ChangeMinBanks(4))
    assert number == 1 and ceremony["alpha"].sign(version).signatures["alpha"] == signature


def test_approve_refuses_a_version_that_does_not_follow_the_node_s_roster(
    tmp_path, ceremony, portal, capsys
):
    pending = _pending(ceremony)
    pending["version"]["previous_hash"] = "0" * 64  # not the hash of version 0
    portal.pending = [pending]
    assert main(["roster", "approve", "1", "--yes", "--config", _config(tmp_path, ceremony)]) == 2
    assert portal.signatures == [] and "refusing to sign" in capsys.readouterr().err


def test_reject_sends_a_signed_objection_naming_the_version_and_the_reason(
    tmp_path, ceremony, portal
):
    portal.pending = [_pending(ceremony)]
    config = _config(tmp_path, ceremony)
    assert main(["roster", "reject", "1", "--reason", "too early", "--config", config]) == 0
    ((objection, signature),) = portal.objections
    assert objection["reason_code"] == "roster_rejected" and "too early" in objection["message"]
    assert objection_verifies(objection, signature, ceremony["alpha"].public)


def test_roster_commands_need_a_pinned_genesis(tmp_path, ceremony, portal, capsys):
    assert main(["roster", "show", "--config", _config(tmp_path, ceremony, genesis=False)]) == 2
    assert "genesis_file" in capsys.readouterr().err


def test_sign_genesis_shows_the_draft_and_prints_a_founder_s_valid_signature(
    tmp_path, ceremony, portal, capsys
):
    config = _config(tmp_path, ceremony)
    draft = genesis_version(ceremony.state.charter(), NOW)
    (tmp_path / "draft.json").write_text(json.dumps(draft.to_dict()))
    assert main(["roster", "sign-genesis", str(tmp_path / "draft.json"), "--config", config]) == 0
    out = capsys.readouterr().out
    assert "Found consortium 'acme'" in out
    signature = json.loads(out.strip().splitlines()[-1])["signature"]
    founders = [b for b in ceremony.banks.values() if b.bank_id != "alpha"]
    complete = signed(draft.with_signature("alpha", signature), *founders)
    assert verify_genesis(complete).version == 0


def test_sign_genesis_refuses_a_draft_without_this_bank(tmp_path, ceremony, portal, capsys):
    config = _config(tmp_path, ceremony)
    others = [new_bank(b) for b in ("x", "y", "z")]
    draft = genesis_version(charter_of(others), NOW)
    (tmp_path / "draft.json").write_text(json.dumps(draft.to_dict()))
    assert main(["roster", "sign-genesis", str(tmp_path / "draft.json"), "--config", config]) == 2
    assert "does not name bank 'alpha'" in capsys.readouterr().err


def test_a_node_without_a_genesis_refuses_to_start_and_names_the_setting(
    tmp_path, ceremony, portal
):
    config = load_config(Path(_config(tmp_path, ceremony, genesis=False)))
    keys = SimpleNamespace(signing_key=ceremony["alpha"].key)
    with pytest.raises(ConfigError, match="genesis_file is not set"):
        _keeper(config, keys, portal)


def test_a_test_consortium_node_without_a_genesis_warns_at_start_and_exports_pinned_0(
    tmp_path, ceremony, portal, caplog
):
    path = Path(_config(tmp_path, ceremony, genesis=False))
    path.write_text(path.read_text() + "allow_unpinned_roster = true\n")
    config = load_config(path)
    keys = SimpleNamespace(signing_key=ceremony["alpha"].key)
    assert _keeper(config, keys, portal) is None
    assert "NO ROSTER PINNED" in caplog.text
    assert node_metrics.ROSTER_PINNED._value.get() == 0


def test_a_node_whose_key_is_not_the_bank_s_roster_key_refuses_to_start(tmp_path, ceremony, portal):

    config = load_config(Path(_config(tmp_path, ceremony)))
    keys = SimpleNamespace(signing_key=new_bank("alpha").key)  # the operator's substitute key
    with pytest.raises(PinError, match="not a roster key"):
        _keeper(config, keys, portal)


def test_clear_dispute_signs_the_canonical_clearance_for_the_pinned_consortium(
    tmp_path, ceremony, portal, capsys
):
    portal.disputes = {7: {"round": 7, "threshold": 3, "objectors": ["beta", "gamma", "delta"]}}
    args = ["roster", "clear-dispute", "7", "--yes", "--config", _config(tmp_path, ceremony)]
    assert main(args) == 0
    ((number, signature),) = portal.clearances
    assert number == 7
    assert verify(ceremony["alpha"].public, clearance_message("acme", 7), signature)
    assert not verify(ceremony["alpha"].public, clearance_message("acme", 8), signature)
    assert "objected to by beta, gamma, delta" in capsys.readouterr().out

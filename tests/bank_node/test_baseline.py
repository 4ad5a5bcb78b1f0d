"""`bank-node baseline`: its policy (file, portal, defaults), --save, and score --model."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bank_node import baseline
from bank_node.cli import main
from bank_node.config import load_config
from bank_node.passport import feature_set_version
from bank_node.scoring_model import load_scoring_model
from models.features import FEATURE_NAMES
from protocol import PolicySnapshot
from simulation.processes import free_port
from simulation.world import generate_world
from tests.bank_node.test_passport_inputs import sketch_policy


@pytest.fixture(scope="module")
def bank_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    manifest = generate_world(out, n_banks=3, preset="tiny", seed=5)
    smallest = min(manifest["banks"].values(), key=lambda b: b["rows"])
    return out / smallest["file"]


@pytest.fixture
def node_toml(tmp_path: Path, bank_file: Path) -> Path:
    (tmp_path / "credential").write_text("not-a-real-credential")
    path = tmp_path / "node.toml"
    # Nothing listens on this port: the portal is unreachable.
    path.write_text(
        f'portal_url = "http://127.0.0.1:{free_port()}"\nbank = "alpha"\n'
        'credential_file = "credential"\nsigning_key_file = "signing.key"\n'
        'secret_context_file = "consortium.secret"\nckks_params_file = "ckks_params.json"\n'
        f'data_file = "{bank_file}"\nstate_dir = "state"\n'
    )
    return path


def _last_json(text: str) -> dict[str, Any]:
    return dict(json.loads(text.strip().splitlines()[-1]))


def test_a_saved_baseline_is_scored_by_score_with_its_own_threshold(
    node_toml: Path, bank_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    saved = tmp_path / "baseline-model"
    assert (
        main(["baseline", "--config", str(node_toml), "--epochs", "1", "--save", str(saved)]) == 0
    )
    figures = _last_json(capsys.readouterr().out)
    assert figures["policy_source"] == "protocol defaults (portal not reachable)"
    assert figures["saved"] == str(saved) and figures["epochs"] == 1
    meta = json.loads((saved / "global_model.json").read_text())
    assert meta["model"] == "local-only" and meta["round"] is None
    assert meta["threshold"] == figures["threshold"]

    out = tmp_path / "scores.csv"
    argv = ["score", "--config", str(node_toml), "--model", str(saved), "--input", str(bank_file)]
    assert main([*argv, "--out", str(out)]) == 0
    scored = _last_json(capsys.readouterr().out)
    rows = list(csv.DictReader(out.open()))
    assert scored["model"] == "local-only" and scored["threshold"] == figures["threshold"]
    assert scored["rows"] == len(rows) == sum(1 for _ in bank_file.open()) - 1
    assert scored["alerts"] == sum(int(r["alert"]) for r in rows) > 0


def test_under_a_sketch_policy_the_baseline_reads_its_feature_set_only_and_says_so(
    node_toml: Path, bank_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    policy = sketch_policy()
    (tmp_path / "sketch.json").write_text(json.dumps(policy.to_dict()))
    saved = tmp_path / "baseline-model"
    argv = ["baseline", "--config", str(node_toml), "--policy", str(tmp_path / "sketch.json")]
    assert main([*argv, "--epochs", "1", "--save", str(saved)]) == 0
    figures = _last_json(capsys.readouterr().out)
    assert figures["inputs"] == f"feature set 'aml-v1' ({len(FEATURE_NAMES)} columns) only"
    assert policy.counterparty_sketch is not None
    assert figures["left_out"]["counterparty_sketch"] == policy.counterparty_sketch.to_dict()
    assert figures["left_out"]["policy"]["digest"] == policy.digest()
    meta = json.loads((saved / "global_model.json").read_text())
    trained = PolicySnapshot.from_dict(meta["policy"])
    assert trained.counterparty_sketch is None and trained.n_features == len(FEATURE_NAMES)
    assert meta["feature_set"] == figures["feature_set"] == feature_set_version()
    assert meta["left_out"] == figures["left_out"]
    # `score` feeds the saved model the columns it was trained on: no sketch round, no keys.
    assert load_scoring_model(saved).feature_names == FEATURE_NAMES
    out = tmp_path / "scores.csv"
    argv = ["score", "--config", str(node_toml), "--model", str(saved), "--input", str(bank_file)]
    assert main([*argv, "--out", str(out)]) == 0
    scored = _last_json(capsys.readouterr().out)
    assert scored["rows"] == sum(1 for _ in bank_file.open()) - 1
    assert scored["threshold"] == figures["threshold"]


def test_the_local_only_policy_of_a_sketch_policy_is_its_plain_policy():
    plain = baseline.default_policy()
    assert baseline.local_only_policy(sketch_policy()) == plain
    assert baseline.local_only_policy(plain) is plain and baseline.left_out(plain) is None


def test_score_without_a_saved_model_says_how_to_make_one(
    node_toml: Path, bank_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    argv = ["score", "--config", str(node_toml), "--input", str(bank_file), "--out", "x.csv"]
    assert main(argv) == 2
    assert "bank-node baseline --save DIR" in capsys.readouterr().err


def test_baseline_refuses_to_save_over_the_nodes_global_model(
    node_toml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    argv = ["baseline", "--config", str(node_toml), "--save", str(tmp_path / "state")]
    assert main(argv) == 2
    assert "is this node's state_dir" in capsys.readouterr().err


def test_without_policy_the_baseline_takes_the_portals_current_round_policy(
    node_toml: Path, monkeypatch: pytest.MonkeyPatch
):
    policy = baseline.default_policy()
    rnd = SimpleNamespace(number=7, policy=policy)
    fake = SimpleNamespace(current_round=lambda: rnd)
    monkeypatch.setattr(baseline, "BankClient", lambda *a, **k: fake)
    chosen = baseline.baseline_policy(load_config(node_toml), None)
    assert chosen.policy is policy
    assert chosen.source == "portal round 7 (policy protocol-defaults v0)"


def test_a_policy_file_may_be_a_snapshot_or_a_rounds_json(tmp_path: Path):
    snapshot = baseline.default_policy().to_dict()
    (tmp_path / "snapshot.json").write_text(json.dumps(snapshot))
    (tmp_path / "round.json").write_text(json.dumps({"number": 3, "policy": snapshot}))
    for name in ("snapshot.json", "round.json"):
        assert baseline.policy_from_file(tmp_path / name).to_dict() == snapshot


def test_a_policy_file_that_is_not_a_snapshot_names_the_missing_field(tmp_path: Path):
    (tmp_path / "p.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(baseline.ConfigError, match=r"p\.json: not a policy snapshot"):
        baseline.policy_from_file(tmp_path / "p.json")


def test_the_defaults_are_the_portals_defaults_for_a_new_policy():
    from consortium.rounds.models import RoundPolicy

    fresh = RoundPolicy()  # a new policy's field defaults; no database needed
    fields = {name: getattr(fresh, name) for name in baseline.POLICY_DEFAULTS}
    assert fields == baseline.POLICY_DEFAULTS


@pytest.fixture
def portal_node_toml(tmp_path: Path, bank_file: Path, bank_alpha: Any, monkeypatch: Any) -> Path:
    """A node.toml whose BankClient talks to this process's portal (Django's test client)."""
    from django.test import Client

    from bank_node.portal_client import BankClient
    from tests.portal_transport import DjangoTransport

    portal = "https://portal.example"
    original = BankClient.__init__

    def init(self: BankClient, base_url: str, credential: str, **kwargs: Any) -> None:
        original(self, base_url, credential, **kwargs)
        self.session.mount(portal, DjangoTransport(Client()))

    monkeypatch.setattr(BankClient, "__init__", init)
    (tmp_path / "credential").write_text(bank_alpha.credential)
    path = tmp_path / "node.toml"
    path.write_text(
        f'portal_url = "{portal}"\nbank = "alpha"\ncredential_file = "credential"\n'
        'signing_key_file = "signing.key"\nsecret_context_file = "consortium.secret"\n'
        f'ckks_params_file = "ckks_params.json"\ndata_file = "{bank_file}"\nstate_dir = "state"\n'
    )
    return path


@pytest.mark.django_db
def test_a_policy_named_by_version_is_fetched_from_the_portal(portal_node_toml: Path, policy: Any):
    chosen = baseline.baseline_policy(load_config(portal_node_toml), "default:1")
    assert chosen.policy == policy.as_snapshot()
    assert chosen.source == "portal policy default v1"


@pytest.mark.django_db
def test_baseline_with_an_unknown_policy_version_names_it_and_exits_2(
    portal_node_toml: Path, policy: Any, capsys: pytest.CaptureFixture[str]
):
    assert main(["baseline", "--config", str(portal_node_toml), "--policy", "default:4"]) == 2
    err = capsys.readouterr().err
    assert "--policy default:4: the portal answered 404" in err
    assert "policy 'default' has no version 4 (its versions: 1)" in err


def test_an_unreachable_portal_for_a_named_policy_is_a_config_error(node_toml: Path):
    with pytest.raises(baseline.ConfigError, match=r"--policy fraud:2: the portal at .* is not"):
        baseline.baseline_policy(load_config(node_toml), "fraud:2")


def test_an_existing_file_named_like_a_policy_version_is_read_as_a_file(
    node_toml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fraud:2").write_text(json.dumps(baseline.default_policy().to_dict()))
    chosen = baseline.baseline_policy(load_config(node_toml), "fraud:2")
    assert chosen.source == "file fraud:2" and chosen.policy == baseline.default_policy()

"""A node computes the policy's feature set from its own data, or refuses the round first."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bank_node.agent import Agent
from bank_node.baseline import default_policy, save_model
from bank_node.checks import Refused, check_feature_set
from bank_node.config import ConfigError, NodeConfig, load_config
from bank_node.data import DataError, check_header, load_transactions
from bank_node.keys import PARAMS, SECRET_CONTEXT, SIGNING_KEY, ckks_keygen, keyring_load
from bank_node.model_files import MODEL_META
from bank_node.passport import passport_for
from bank_node.schemas import FORMATS
from bank_node.score_stream import score_input
from bank_node.scoring_model import load_scoring_model
from bank_node.serve import ModelHolder
from bank_node.training import local_data
from he.params import CkksParams
from he.signing import private_key_bytes
from models.feature_sets import FEATURE_SETS
from models.nets import build_model
from models.vector import model_to_vector
from protocol import PolicySnapshot
from simulation.formats import paysim_files, ulb_files
from tests.bank_node.roster_fakes import FakePortal, training_round
from tests.protocol.messages import policy_dict


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """These tests touch no Django (the repo-wide fixture of this name needs it)."""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("formats")
    paysim = paysim_files(base / "paysim", n_banks=3, seed=3)[0]
    ulb = ulb_files(base / "ulb", n_banks=1, rows=400, seed=3)[0]
    ibm = sorted((base / "paysim" / "ibm-world").glob("bank_*.csv"))[0]
    return {"ibm": ibm, "paysim": paysim, "ulb": ulb}


def _policy(name: str, **overrides: object) -> PolicySnapshot:
    spec = FEATURE_SETS[name]
    return PolicySnapshot.from_dict(
        policy_dict(**{"feature_set": name, "n_features": spec.n_features, **overrides})
    )


@pytest.mark.parametrize(
    ("fmt", "name", "words"),
    [
        ("ibm", "card-v1", "'card-v1' needs columns this bank's IBM AML data does not have: v1"),
        ("ibm", "paysim-v1", "transaction_type, rule_flag"),
        ("ulb", "paysim-v1", "ULB creditcard data does not have: transaction_type"),
        ("paysim", "card-v1", "PaySim data does not have: v1, v2"),
    ],
)
def test_a_feature_set_the_data_cannot_give_is_refused_naming_set_and_columns(
    fmt: str, name: str, words: str
):
    source = FORMATS[fmt]
    with pytest.raises(Refused) as caught:
        check_feature_set(_policy(name), source.name, source.frame_columns)
    assert caught.value.reason == "feature_set_unusable"
    assert words in caught.value.message


def test_a_set_this_node_does_not_know_or_a_wrong_width_is_refused():
    with pytest.raises(Refused) as caught:
        check_feature_set(_policy("aml-v1", feature_set="swift-v9"), "IBM AML", [])
    assert caught.value.reason == "feature_set_unknown" and "'swift-v9'" in caught.value.message
    wrong = _policy("card-v1", n_features=12)
    with pytest.raises(Refused) as caught:
        check_feature_set(wrong, "ULB creditcard", FORMATS["ulb"].frame_columns)
    assert caught.value.reason == "feature_set_mismatch"


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("ibm", "aml-v1"), ("paysim", "paysim-v1"), ("ulb", "card-v1"), ("ulb", "aml-v1")],
)
def test_local_data_computes_the_named_set(files, fmt, name):
    data = local_data(files[fmt], features=name)
    width = FEATURE_SETS[name].n_features
    assert data.x_train.shape[1] == data.x_test.shape[1] == width
    assert data.x_train.shape[0] > 0


def test_a_named_data_format_reads_the_file_as_that_format_or_names_the_missing_column(files):
    assert check_header(files["ulb"], "ulb").name == "ULB creditcard"
    assert len(load_transactions(files["paysim"], data_format="paysim")) > 0
    with pytest.raises(DataError) as caught:
        check_header(files["ibm"], "paysim")
    assert caught.value.column == "step" and "PaySim" in caught.value.problem


def test_the_config_takes_a_data_format_and_refuses_another_word(tmp_path: Path):
    base = (
        'portal_url = "http://127.0.0.1:8000"\nbank = "b"\ncredential_file = "c"\n'
        'signing_key_file = "s"\nsecret_context_file = "x"\nckks_params_file = "p"\n'
        'data_file = "d.csv"\nstate_dir = "st"\n'
    )
    path = tmp_path / "node.toml"
    path.write_text(base)
    assert load_config(path).data_format == "auto"
    path.write_text(base + 'data_format = "ulb"\n')
    assert load_config(path).data_format == "ulb"
    path.write_text(base + 'data_format = "swift"\n')
    with pytest.raises(ConfigError, match="data_format must be one of auto, ibm, paysim, ulb"):
        load_config(path)


def _agent(tmp_path: Path, data_file: Path, portal: FakePortal) -> Agent:
    ckks = tmp_path / "ckks"
    ckks_keygen(ckks, CkksParams())
    (tmp_path / SIGNING_KEY).write_bytes(private_key_bytes(Ed25519PrivateKey.generate()))
    cfg = NodeConfig(
        portal_url="http://127.0.0.1:9", bank="alpha", credential_file=tmp_path / "none",
        signing_key_file=tmp_path / SIGNING_KEY, secret_context_file=ckks / SECRET_CONTEXT,
        ckks_params_file=ckks / PARAMS, data_file=data_file, state_dir=tmp_path / "state",
        allow_unpinned_roster=True,
    )  # fmt: skip
    keys = keyring_load(cfg.secret_context_file, cfg.ckks_params_file, cfg.signing_key_file)
    return Agent(cfg, keys, portal, None)  # type: ignore[arg-type]  # the fake portal


def test_an_ibm_node_sits_out_a_card_round_before_training_naming_the_reason(
    tmp_path: Path, files, caplog
):
    portal = FakePortal()
    agent = _agent(tmp_path, files["ibm"], portal)
    rnd = training_round(_policy("card-v1", dp_target_epsilon=None))
    portal.current = training_round(
        rnd.policy, key_epoch=agent.keys.fingerprint, base_round=None, stats_round=None
    )
    agent.step()
    assert portal.uploads == []
    # Without a pinned roster there is no consortium to sign an objection to: it is logged.
    assert "REFUSED (feature_set_unusable)" in caplog.text
    assert "'card-v1' needs columns this bank's IBM AML data" in agent.state.skipped["4"]


def test_the_passport_records_the_feature_set_by_name():
    rnd = training_round(_policy("card-v1"), state="published")
    passport = passport_for(rnd, "alpha", {"auprc": 0.5}, 0.3)
    assert passport.feature_set_name == "card-v1"
    assert passport.to_dict()["feature_set_name"] == "card-v1"


def _card_model(directory: Path) -> Path:
    policy = _policy("card-v1")
    save_model(directory, model_to_vector(build_model(policy.model_spec, 31)), policy, 0.5, None)
    return directory


def test_score_computes_card_features_for_a_card_model_with_input_lines(tmp_path: Path, files):
    model = load_scoring_model(_card_model(tmp_path / "model"))
    out = tmp_path / "scores.csv"
    summary = score_input(model, files["ulb"], out, batch_rows=128)
    rows = list(csv.DictReader(out.open()))
    frame = load_transactions(files["ulb"])
    assert summary.rows == len(frame) == len(rows)
    assert [int(r["line"]) for r in rows] == list(range(2, len(frame) + 2))
    expected = model.score_frame(frame)
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, atol=1e-6)


def test_score_refuses_data_without_the_models_feature_set_naming_it(tmp_path: Path, files):
    model = load_scoring_model(_card_model(tmp_path / "model"))
    with pytest.raises(DataError, match="feature set 'card-v1' needs columns"):
        score_input(model, files["ibm"], tmp_path / "scores.csv")


def test_serve_loads_a_card_model_and_refuses_one_whose_set_it_does_not_know(tmp_path: Path):
    # Every registered set is served online (bank_node/serve_sets.py); an unknown one is not.
    slot = ModelHolder(_card_model(tmp_path / "model"))
    assert slot.load() and slot.model is not None
    assert slot.model.policy.feature_set == "card-v1"
    meta = tmp_path / "model" / MODEL_META
    text = meta.read_text()
    assert '"card-v1"' in text
    meta.write_text(text.replace('"card-v1"', '"cheque-v9"'))
    unknown = ModelHolder(tmp_path / "model")
    assert not unknown.load()
    assert "cheque-v9" in (unknown.problem or "")


def test_an_aml_model_still_loads_for_serving(tmp_path: Path):
    policy = default_policy()
    weights = model_to_vector(build_model(policy.model_spec, policy.n_features))
    save_model(tmp_path / "aml", weights, policy, 0.5, None)
    assert ModelHolder(tmp_path / "aml").load()
    assert json.loads((tmp_path / "aml" / "global_model.json").read_text())["policy"]

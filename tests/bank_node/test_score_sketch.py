"""A model of a counterparty_sketch policy is scored on the columns training read.

A tiny world, the others' sketches of two other banks kept by the real `SketchRounds`, a
model saved the way the agent saves one; `bank-node score` (in memory and streamed) must
give every row the score the model gives the training path's matrix for it
(`sketched_local_data`), and refuse with the file named when the node cannot compute it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bank_node.cli import main
from bank_node.config import ConfigError, NodeConfig
from bank_node.data import load_transactions
from bank_node.drift_state import drift_reference_save, reference_file
from bank_node.explain import alert_reason_lists
from bank_node.feature_store import SqliteStore
from bank_node.features_duckdb import EngineSettings
from bank_node.keys import SECRET_CONTEXT, SIGNING_KEY, Keyring, ckks_keygen, signing_keygen
from bank_node.passport import feature_set_version, inputs_version, passport_for, write_passport
from bank_node.personalise import run_personalise
from bank_node.registry import ModelRegistry
from bank_node.schemas import TIMESTAMP_FORMAT
from bank_node.score_output import read_scored
from bank_node.score_stream import score_input
from bank_node.scoring_model import MODEL_META, ScoringModel, SketchSource, load_scoring_model
from bank_node.serve import ModelHolder, ScoringService
from bank_node.sketch_round import (
    SketchRounds,
    others_sketch_file,
    sketched_local_data,
    spec_dates,
    spec_shape,
)
from bank_node.sketch_scoring import node_sketch_source
from bank_node.splits import split_frame
from bank_node.state import NodeState, save_global_model, state_file
from bank_node.training import Normalizer, evaluate, local_data
from models.counterparty_sketch import SKETCH_FEATURE_NAMES, build_sketches, sketch_key
from models.features import FEATURE_NAMES
from models.nets import FraudMLP, build_model
from models.vector import model_to_vector
from protocol import PolicySnapshot, RoundInfo, SketchSpec
from simulation.world import generate_world
from tests.bank_node.serve_helpers import TOKEN, answer, post, transaction
from tests.conftest import PARAMS
from tests.protocol.messages import policy_dict, round_dict, sketch_dict

pytestmark = pytest.mark.filterwarnings("ignore")
WIDTH = len(FEATURE_NAMES) + len(SKETCH_FEATURE_NAMES)
SKETCH = sketch_dict(as_of=["2022-09-15", "2022-10-01"], depth=3, width=256, window_days=14)
SPEC = SketchSpec.from_dict(SKETCH)
SKETCH_ROUND, STATS_ROUND, TRAINING_ROUND = 5, 6, 7
THRESHOLD = 0.999  # few alerts: each costs an explanation (~64 passes), not what is tested
SENT = ["from_bank", "from_account", "to_bank", "to_account", "receiving_currency",
        "payment_currency", "payment_format"]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Node:
    config: NodeConfig
    keys: Keyring

    @property
    def source(self) -> SketchSource:
        return SketchSource(self.config.state_dir, lambda: self.keys)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, n_banks=3, preset="tiny", seed=3)
    return out


def _round(number: int, kind: str, fingerprint: str, stats_round: int | None) -> RoundInfo:
    policy = policy_dict(counterparty_sketch=SKETCH, normalize_features=True, n_features=WIDTH)
    fields = {"number": number, "kind": kind, "state": "published", "policy": policy}
    return RoundInfo.from_dict(
        round_dict(
            **fields,
            key_epoch=fingerprint,
            base_round=None,
            base_key_epoch=None,
            stats_round=stats_round,
        )
    )


@pytest.fixture(scope="module")
def node(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Node:
    """Bank 1's node, with key files from the ceremony, after concluding a sketch round that
    banks 2 and 3 took part in."""
    home = tmp_path_factory.mktemp("node")
    keydir = home / "keys"
    ckks_keygen(keydir, PARAMS)
    signing_keygen(keydir)
    config = NodeConfig(
        portal_url="http://127.0.0.1:9", bank="alpha", credential_file=home / "credential",
        signing_key_file=keydir / SIGNING_KEY, secret_context_file=keydir / SECRET_CONTEXT,
        ckks_params_file=keydir / "ckks_params.json", data_file=world / "bank_1.csv",
        state_dir=home / "state",
    )  # fmt: skip
    config.state_dir.mkdir()
    config.credential_file.write_text("not-a-real-credential")
    keys = node_sketch_source(config).keyring()  # the loader `score` and `serve` use
    key = sketch_key(keys.integrity_key, keys.fingerprint)
    others = sum(
        build_sketches(load_transactions(world / f"bank_{i}.csv"), key, spec_shape(SPEC),
                       spec_dates(SPEC))
        for i in (2, 3)
    ) + np.random.default_rng(1).normal(0.0, 2.0, (2, *spec_shape(SPEC).cells))  # fmt: skip
    state = NodeState()
    rounds = SketchRounds(
        config, keys, lambda n, e: (others.ravel() / 2, 2.0), lambda: state, lambda: []
    )
    rounds.conclude(_round(SKETCH_ROUND, "sketch", keys.fingerprint, None))
    return Node(config, keys)


@pytest.fixture(scope="module")
def model_dir(node: Node) -> Path:
    """A model saved as the agent saves an evaluated one, normalising all 50 columns."""
    rng = np.random.default_rng(2)
    rnd = _round(TRAINING_ROUND, "training", node.keys.fingerprint, STATS_ROUND)
    initial = model_to_vector(build_model(rnd.policy.model_spec, WIDTH))
    weights = initial + rng.normal(0.0, 0.3, initial.shape)  # scores that vary with the rows
    state_dir = node.config.state_dir
    normalizer = Normalizer(rng.normal(0.0, 0.2, WIDTH), rng.uniform(0.5, 2.0, WIDTH), STATS_ROUND)
    (state_dir / f"normalization-round-{STATS_ROUND}.json").write_text(normalizer.to_json())
    save_global_model(state_dir, rnd, weights, THRESHOLD)
    return state_dir


@pytest.fixture(scope="module")
def model(node: Node, model_dir: Path) -> ScoringModel:
    return load_scoring_model(model_dir, sketches=node.source)


@pytest.fixture(scope="module")
def expected(node: Node, model: ScoringModel) -> dict[int, float]:
    """Each row's score (by its CSV line) from the training path's feature matrix."""
    config = node.config
    key = sketch_key(node.keys.integrity_key, node.keys.fingerprint)
    base = local_data(config.data_file, config.evaluation, "aml-v1")
    data = sketched_local_data(
        config.data_file, config.evaluation, config.state_dir, SKETCH_ROUND, key, base
    )
    frame = load_transactions(config.data_file)
    parts = split_frame(frame, config.evaluation, config.data_file)
    out: dict[int, float] = {}
    for part, x in zip(parts, (data.x_train, data.x_val, data.x_test), strict=True):
        assert x.shape[1] == WIDTH
        scores = model.scores(model.normalise(x))
        lines = frame.index.get_indexer(part.index) + 2
        out.update(zip(lines.tolist(), scores.tolist(), strict=True))
    return out


def _check(scored: dict[int, float], expected: dict[int, float]) -> None:
    assert set(expected) <= set(scored) and len(expected) > 1000
    worst = max(abs(scored[line] - score) for line, score in expected.items())
    assert worst <= 1e-6


def test_the_model_reads_its_feature_sets_columns_then_the_cross_bank_ones(model):
    assert model.cross_bank is not None and model.cross_bank.round_number == SKETCH_ROUND
    assert model.feature_names == [*FEATURE_NAMES, *SKETCH_FEATURE_NAMES]
    assert json.loads((model.source / MODEL_META).read_text())["key_epoch"]


def test_scoring_in_memory_gives_the_training_matrixs_scores(model, node, expected):
    frame = load_transactions(node.config.data_file)
    scores = model.score_frame(frame)
    _check(dict(zip((frame.index + 2).tolist(), scores.tolist(), strict=True)), expected)


def _config_file(node: Node, tmp_path: Path, **paths: Path) -> Path:
    """A node.toml of ``node``'s files (a field in ``paths`` pointed elsewhere)."""
    config = node.config
    files = {
        "credential_file": config.credential_file, "signing_key_file": config.signing_key_file,
        "secret_context_file": config.secret_context_file,
        "ckks_params_file": config.ckks_params_file, "data_file": config.data_file,
        "state_dir": config.state_dir, **paths,
    }  # fmt: skip
    lines = [f'{name} = "{path}"' for name, path in files.items()]
    path = tmp_path / "node.toml"
    path.write_text('portal_url = "http://127.0.0.1:9"\nbank = "alpha"\n' + "\n".join(lines))
    return path


def test_bank_node_score_gives_the_training_matrixs_scores(node, expected, tmp_path, capsys):
    out = tmp_path / "scores.parquet"  # every digit (the CSV shows six decimals)
    config = _config_file(node, tmp_path)
    argv = ["score", "--config", str(config), "--input", str(node.config.data_file)]
    assert main([*argv, "--out", str(out), "--work-dir", str(tmp_path / "work")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["global_model_round"] == TRAINING_ROUND
    _, rows = read_scored(out)
    _check({int(r["line"]): float(r["score"]) for r in rows}, expected)


def test_bank_node_score_without_the_key_files_names_the_field(node, tmp_path, capsys):
    config = _config_file(node, tmp_path, secret_context_file=tmp_path / "gone.secret")
    argv = ["score", "--config", str(config), "--input", str(node.config.data_file)]
    assert main([*argv, "--out", str(tmp_path / "out.csv")]) == 2
    error = capsys.readouterr().err
    assert "bank-node score: error: secret_context_file" in error and "no such file" in error
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("engine", ["duckdb"])
def test_scoring_streamed_in_batches_gives_the_training_matrixs_scores(
    model, node, expected, tmp_path, engine
):
    out = tmp_path / "scores.parquet"  # every digit (the CSV shows six decimals)
    settings = EngineSettings(memory_limit="512MB", temp_directory=tmp_path / "work")
    summary = score_input(
        model,
        node.config.data_file,
        out,
        settings=settings,
        batch_rows=700,
        engine=engine,
        reasons=1,
    )
    _, rows = read_scored(out)
    scored = {int(r["line"]): float(r["score"]) for r in rows}
    assert summary.rows == len(scored)
    _check(scored, expected)


def test_the_reasons_of_an_alert_name_the_models_columns(model, node):
    frame = load_transactions(node.config.data_file).iloc[-3:]
    raw = model.features(frame)
    x = model.normalise(raw)
    rows = alert_reason_lists(
        model.net, x, raw, model.scores(x), 0.0, feature_names=model.feature_names
    )
    named = {reason.feature for row in rows for reason in row}
    assert named and named <= set(model.feature_names)


def test_a_row_before_the_first_as_of_date_reads_zeros_and_later_rows_do_not(model, node):
    frame = load_transactions(node.config.data_file)
    extra = model.features(frame)[:, len(FEATURE_NAMES) :]
    early = frame["timestamp"].to_numpy() < np.datetime64(SPEC.as_of[0])
    assert early.any() and (~early).any()
    assert np.all(extra[early] == 0.0)
    assert np.count_nonzero(extra[~early]) > 0


def test_a_node_that_keeps_no_sketch_round_of_the_spec_is_told_what_to_do(
    model_dir, node, tmp_path
):
    empty = SketchSource(tmp_path, lambda: node.keys)
    with pytest.raises(ConfigError, match="keeps no published sketch round of that spec") as err:
        load_scoring_model(model_dir, sketches=empty)
    assert "bank-node run" in str(err.value)
    other = dataclasses.replace(SPEC, width=128)  # a kept round of another spec does not do
    NodeState(sketches={"5": {"as_of": SKETCH["as_of"], "spec": other.to_dict()}}).save(
        state_file(tmp_path)
    )
    with pytest.raises(ConfigError, match="keeps no published sketch round"):
        load_scoring_model(model_dir, sketches=empty)


def test_a_node_without_the_models_epoch_key_is_told_which_key_it_needs(model_dir, node):
    stranger = dataclasses.replace(node.keys, fingerprint="ab" * 32)
    source = SketchSource(node.config.state_dir, lambda: stranger)
    with pytest.raises(ConfigError, match=r"integrity\.key of key epoch .*previous_key_dirs"):
        load_scoring_model(model_dir, sketches=source)


def test_a_model_without_a_recorded_key_epoch_is_refused_with_the_file_named(
    model_dir, node, tmp_path
):
    copy = tmp_path / "model"
    copy.mkdir()
    for path in model_dir.glob("*"):
        if path.name.startswith(("global_model", "normalization")):
            copy.joinpath(path.name).write_bytes(path.read_bytes())
    meta = json.loads((copy / MODEL_META).read_text())
    del meta["key_epoch"]
    (copy / MODEL_META).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"global_model\.json: records no key_epoch"):
        load_scoring_model(copy, sketches=node.source)
    # A registry version saved before descriptions recorded it: its passport's epoch.
    rnd = _round(TRAINING_ROUND, "training", node.keys.fingerprint, STATS_ROUND)
    write_passport(copy, passport_for(rnd, "alpha", {}, THRESHOLD))
    assert load_scoring_model(copy, sketches=node.source).cross_bank is not None


def test_a_registry_version_of_a_sketch_model_loads_by_its_passports_inputs(
    model_dir, node, tmp_path
):
    rnd = _round(TRAINING_ROUND, "training", node.keys.fingerprint, STATS_ROUND)
    name = f"normalization-round-{STATS_ROUND}.json"
    (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    registry = ModelRegistry(tmp_path, 0.02)
    passport = passport_for(rnd, "alpha", {}, THRESHOLD)
    version = registry.store(rnd, np.load(model_dir / "global_model.npy"), passport)
    assert passport.feature_set == inputs_version("aml-v1", SPEC) != feature_set_version()
    assert load_scoring_model(version, sketches=node.source).cross_bank is not None
    # A passport stored before the digest covered the cross-bank columns: its policy's
    # digest is the sketch policy's, so it is read as that policy's inputs.
    write_passport(version, dataclasses.replace(passport, feature_set=feature_set_version()))
    assert load_scoring_model(version, sketches=node.source).cross_bank is not None
    plain = RoundInfo.from_dict(round_dict(number=TRAINING_ROUND, state="published"))
    write_passport(version, passport_for(plain, "alpha", {}, THRESHOLD))
    with pytest.raises(ConfigError, match=r"passport\.json: the model was trained on feature set"):
        load_scoring_model(version, sketches=node.source)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: np.save(p, np.zeros((1, 4, 3, 256))), r"shape \(1, 4, 3, 256\), not the"),
        (lambda p: p.write_text("not an array"), "not a kept sketch"),
        (lambda p: p.unlink(), "does not exist, but the node state lists sketch round 5"),
    ],
    ids=["wrong shape", "not numpy", "missing"],
)
def test_a_damaged_kept_sketch_is_refused_with_the_file_named(
    model_dir, node, tmp_path, damage, message
):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    for path in model_dir.glob("*"):
        if path.is_file():
            state_dir.joinpath(path.name).write_bytes(path.read_bytes())
    damage(others_sketch_file(state_dir, SKETCH_ROUND))
    source = SketchSource(state_dir, lambda: node.keys)
    with pytest.raises(ConfigError, match=message) as err:
        load_scoring_model(state_dir, sketches=source)
    assert "sketch-round-5.npy" in str(err.value)


def test_a_caller_without_node_state_is_refused_for_a_sketch_model(model_dir):
    with pytest.raises(ConfigError, match="sketch rounds and keys of a node's state_dir"):
        load_scoring_model(model_dir)


def test_a_frame_of_one_row_reads_the_same_columns_as_in_the_whole_file(model, node):
    frame = load_transactions(node.config.data_file)
    whole = model.cross_bank.features(frame)
    row = frame.index[-1]
    one = model.cross_bank.features(pd.DataFrame(frame.loc[[row]]))
    np.testing.assert_array_equal(one[0], whole[-1])


def _service(model_dir: Path, source: SketchSource | None, tmp_path: Path) -> ScoringService:
    holder = ModelHolder(model_dir, source)
    holder.load()
    store = SqliteStore(tmp_path / "serve" / "accounts.sqlite3")
    return ScoringService(models=holder, store=store, token=TOKEN, max_batch=100_000)


def _as_sent(row: Any) -> dict[str, Any]:
    sent: dict[str, Any] = {name: str(getattr(row, name)) for name in SENT}
    sent["timestamp"] = row.timestamp.strftime(TIMESTAMP_FORMAT)
    sent["amount_paid"], sent["amount_received"] = row.amount_paid, row.amount_received
    return sent


def test_serve_scores_each_transaction_as_score_does(model_dir, node, model, tmp_path):
    service = _service(model_dir, node.source, tmp_path)
    assert service.models.model is not None, service.models.problem
    # Every 20th row: the whole period (before and after each as-of date) in few requests.
    frame = load_transactions(node.config.data_file).iloc[::20].reset_index(drop=True)
    assert (frame["timestamp"] < np.datetime64(SPEC.as_of[0])).any()
    order = np.argsort(frame["timestamp"].to_numpy(), kind="stable")
    sent = [_as_sent(frame.iloc[i]) for i in order]
    results = answer(post(service, {"transactions": sent}))["results"]
    served = np.empty(len(frame))
    served[order] = [r["score"] for r in results]
    assert np.max(np.abs(served - model.score_frame(frame))) <= 1e-6


def test_serve_without_the_nodes_sketches_refuses_the_model_and_says_why(model_dir, node, tmp_path):
    service = _service(model_dir, SketchSource(tmp_path, lambda: node.keys), tmp_path)
    assert service.models.model is None
    assert "keeps no published sketch round" in (service.models.problem or "")
    response = post(service, transaction())
    assert response.status == 503 and b"keeps no published sketch round" in response.body


def test_the_drift_reference_of_a_sketch_model_names_its_columns(node, model_dir, tmp_path):
    config = node.config
    key = sketch_key(node.keys.integrity_key, node.keys.fingerprint)
    base = local_data(config.data_file, config.evaluation, "aml-v1")
    data = sketched_local_data(
        config.data_file, config.evaluation, config.state_dir, SKETCH_ROUND, key, base
    )
    policy = PolicySnapshot.from_dict(json.loads((model_dir / MODEL_META).read_text())["policy"])
    weights = np.load(model_dir / "global_model.npy")
    drift_reference_save(tmp_path, TRAINING_ROUND, policy, weights, data, None)
    kept = json.loads(reference_file(tmp_path, TRAINING_ROUND).read_text())
    # aml-v1's 44 columns and 6 more are 50, as many as paysim-v1 has: named by the policy.
    assert kept["features"] == [*FEATURE_NAMES, *SKETCH_FEATURE_NAMES]


def test_personalise_fine_tunes_a_sketch_model_on_the_columns_training_read(
    node: Node, model: ScoringModel, tmp_path: Path
) -> None:
    config = node.config
    key = sketch_key(node.keys.integrity_key, node.keys.fingerprint)
    base = local_data(config.data_file, config.evaluation, "aml-v1")
    data = sketched_local_data(
        config.data_file, config.evaluation, config.state_dir, SKETCH_ROUND, key, base
    ).normalized(model.normalizer)
    assert isinstance(model.net, FraudMLP)
    save = tmp_path / "personal"
    out = run_personalise(config, save=save)
    # The served model's figures are those of the training path's matrix, sketch columns in.
    assert out["global"] == evaluate(model.net, data)
    saved = load_scoring_model(save, sketches=node.source)
    assert saved.label == "personalised" and saved.round == TRAINING_ROUND
    assert saved.cross_bank is not None and saved.cross_bank.round_number == SKETCH_ROUND
    assert isinstance(saved.net, FraudMLP)
    assert evaluate(saved.net, data)["auprc"] == pytest.approx(out["personalised"]["auprc"])

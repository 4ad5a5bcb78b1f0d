"""`bank-node score`: the reasons column of alerting rows, --reasons, and drift per scored day."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import torch
from prometheus_client import REGISTRY, CollectorRegistry

from bank_node import metrics as node_metrics
from bank_node.baseline import default_policy, save_model
from bank_node.cli import main
from bank_node.data import load_transactions
from bank_node.drift_metrics import DriftCollector, watch
from bank_node.drift_state import (
    drift_record,
    drift_reference_save,
    reference_file,
    windows_file,
)
from bank_node.explain import alert_reasons, feature_names_for
from bank_node.training import LocalData, Normalizer, feature_moments, local_data, model_from_vector
from models.features import CARD_FEATURE_NAMES, FEATURE_NAMES, compute_features
from models.nets import FraudMLP
from models.reasons import explain
from models.training import predict_scores
from models.vector import model_to_vector
from protocol import PolicySnapshot
from simulation.processes import free_port
from simulation.world import generate_world

ROUND = 7


@pytest.fixture(scope="module")
def bank_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    manifest = generate_world(out, n_banks=3, preset="tiny", seed=5)
    smallest = min(manifest["banks"].values(), key=lambda b: b["rows"])
    return out / smallest["file"]


def trained(data: LocalData, policy: PolicySnapshot) -> tuple[FraudMLP, Normalizer]:
    """The policy's model after 40 full-batch Adam steps on the normalised training split
    (a Lightning epoch would take seconds; the model only needs to be a trained one)."""
    norm = Normalizer.from_moments(feature_moments(data)[0], 0)
    model = model_from_vector(policy.model_spec, policy.n_features, None, lr=0.01)
    x, y = torch.from_numpy(norm.apply(data.x_train)), torch.from_numpy(data.y_train)
    optimizer = model.configure_optimizers()
    for _ in range(40):
        optimizer.zero_grad()
        model._loss(model(x), y).backward()
        optimizer.step()
    return model.eval(), norm


@pytest.fixture(scope="module")
def served(bank_file: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A model trained one epoch on the bank's data, saved as round 7's global model of a
    node's state dir with its drift reference, alerting on the top 2% of the file's scores."""
    data = local_data(bank_file)
    policy = default_policy()
    model, norm = trained(data, policy)
    raw = compute_features(load_transactions(bank_file))
    x = norm.apply(raw)
    scores = predict_scores(model, x)
    threshold = float(np.quantile(scores, 0.98))
    state = tmp_path_factory.mktemp("node") / "state"
    weights = model_to_vector(model)
    save_model(state, weights, policy, threshold, norm)
    meta = json.loads((state / "global_model.json").read_text())
    meta.pop("model")
    (state / "global_model.json").write_text(json.dumps({**meta, "round": ROUND}))
    drift_reference_save(state, ROUND, policy, weights, data, norm)
    return {"state": state, "model": model, "x": x, "raw": raw, "scores": scores,
            "threshold": threshold, "data": data}  # fmt: skip


@pytest.fixture
def node_toml(tmp_path: Path, bank_file: Path, served: dict[str, Any]) -> Path:
    (tmp_path / "credential").write_text("not-a-real-credential")
    path = tmp_path / "node.toml"
    path.write_text(
        f'portal_url = "http://127.0.0.1:{free_port()}"\nbank = "alpha"\n'
        'credential_file = "credential"\nsigning_key_file = "signing.key"\n'
        'secret_context_file = "consortium.secret"\nckks_params_file = "ckks_params.json"\n'
        f'data_file = "{bank_file}"\nstate_dir = "{served["state"]}"\n'
    )
    return path


def score(node_toml: Path, bank_file: Path, out: Path, capsys, *extra: str) -> dict[str, Any]:
    argv = ["score", "--config", str(node_toml), "--input", str(bank_file), "--out", str(out)]
    assert main([*argv, *extra]) == 0
    return dict(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))


def test_alerting_rows_carry_their_top_three_reasons_and_other_rows_none(
    node_toml, bank_file, served, tmp_path, capsys
):
    out = tmp_path / "scored.csv"
    summary = score(node_toml, bank_file, out, capsys)
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["line", "score", "alert", "model_version", "reasons"]
    # The root global model of round 7 (no registry): every row names it by its round.
    assert summary["model_version"] == f"round-{ROUND}"
    assert {r["model_version"] for r in rows} == {f"round-{ROUND}"}
    alerting = [r for r in rows if r["alert"] == "1"]
    assert summary["alerts"] == len(alerting) > 0
    assert all(r["reasons"] == "" for r in rows if r["alert"] == "0")
    assert all(1 <= len(r["reasons"].split("; ")) <= 3 for r in alerting)
    first = int(alerting[0]["line"]) - 2
    expected = explain(
        served["model"], served["x"][[first]], feature_names=FEATURE_NAMES,
        raw=served["raw"][[first]],
    )[0]  # fmt: skip
    assert alerting[0]["reasons"] == "; ".join(reason.text for reason in expected)


@pytest.mark.parametrize(("flag", "most"), [("0", 0), ("1", 1)])
def test_reasons_n_sets_how_many_reasons_an_alert_gets_and_0_turns_them_off(
    node_toml, bank_file, tmp_path, capsys, flag, most
):
    out = tmp_path / "scored.csv"
    score(node_toml, bank_file, out, capsys, "--reasons", flag)
    alerting = [r for r in csv.DictReader(out.open()) if r["alert"] == "1"]
    assert alerting and all(len(r["reasons"].split("; ")) == most for r in alerting if most)
    assert most or all(r["reasons"] == "" for r in alerting)


@pytest.mark.parametrize("bad", ["-1", "three", "2.5"])
def test_a_reasons_count_that_is_not_a_whole_number_is_refused_by_name(
    node_toml, bank_file, capsys, bad
):
    argv = ["score", "--config", str(node_toml), "--input", str(bank_file), "--out", "x.csv"]
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--reasons", bad])
    assert exited.value.code == 2
    assert f"argument --reasons: expected a whole number 0 or more, got {bad!r}" in (
        capsys.readouterr().err
    )


def test_scoring_against_the_state_dir_records_each_days_psi_for_the_metrics(
    node_toml, bank_file, served, tmp_path, capsys
):
    summary = score(node_toml, bank_file, tmp_path / "scored.csv", capsys)
    days = sorted({str(t.date()) for t in load_transactions(bank_file)["timestamp"]})
    assert summary["drift"]["days"] == days
    recorded = json.loads(windows_file(served["state"]).read_text())["days"]
    assert sorted(recorded) == days
    newest = recorded[days[-1]]
    assert newest["reference_round"] == ROUND and set(newest["feature_psi"]) == set(FEATURE_NAMES)
    assert summary["drift"]["score_psi"] == round(newest["score_psi"], 4)

    registry = CollectorRegistry()
    watch(served["state"], registry)
    assert registry.get_sample_value("bank_node_score_psi") == newest["score_psi"]
    assert registry.get_sample_value("bank_node_drift_window_rows") == newest["rows"]
    assert registry.get_sample_value("bank_node_drift_reference_round") == ROUND
    value = registry.get_sample_value("bank_node_feature_psi", {"feature": "log_amount"})
    assert value == newest["feature_psi"]["log_amount"]


def test_scoring_the_same_day_again_replaces_its_entry_rather_than_adding_to_it(
    node_toml, bank_file, served, tmp_path, capsys
):
    score(node_toml, bank_file, tmp_path / "a.csv", capsys)
    first = json.loads(windows_file(served["state"]).read_text())["days"]
    score(node_toml, bank_file, tmp_path / "b.csv", capsys)
    again = json.loads(windows_file(served["state"]).read_text())["days"]
    assert {d: e["rows"] for d, e in again.items()} == {d: e["rows"] for d, e in first.items()}


def test_the_training_split_measured_against_its_own_reference_shows_no_drift(served, tmp_path):
    data = served["data"]
    state = tmp_path / "state"
    state.mkdir()
    x = data.x_train
    raw_scores = predict_scores(served["model"], x)  # any fixed model: its own reference
    drift_reference_save(state, 1, default_policy(), model_to_vector(served["model"]), data, None)
    stamps = np.full(len(x), np.datetime64("2024-01-01T12:00"))
    summary = drift_record(state, 1, x, raw_scores, stamps)
    assert summary is not None
    assert summary["score_psi"] < 1e-3 and max(summary["max_feature_psi"].values()) < 1e-3


def test_a_local_only_model_or_one_without_a_reference_records_no_drift(
    node_toml, bank_file, served, tmp_path, capsys
):
    reference = reference_file(served["state"], ROUND)
    kept = reference.read_text()
    reference.unlink()
    try:
        assert score(node_toml, bank_file, tmp_path / "scored.csv", capsys)["drift"] is None
    finally:
        reference.write_text(kept)
    collector = DriftCollector(tmp_path)  # nothing recorded: families without samples
    assert all(family.samples == [] for family in collector.collect())


def test_the_nodes_metrics_endpoint_serves_the_recorded_drift(
    node_toml, bank_file, served, tmp_path, capsys
):
    score(node_toml, bank_file, tmp_path / "scored.csv", capsys)
    collector = watch(served["state"])
    data = tmp_path / "transactions.csv"
    data.write_text("Timestamp\n")
    server = node_metrics.start_metrics_server(
        0, bank="alpha", state_dir=served["state"], data_file=data, addr="127.0.0.1"
    )
    try:
        text = requests.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).text
    finally:
        server.shutdown()
        server.server_close()
        REGISTRY.unregister(collector)
    assert 'bank_node_feature_psi{feature="src_out_count_1h"}' in text
    assert "bank_node_score_psi " in text


def test_the_reasons_column_is_empty_without_a_threshold_and_names_follow_the_width(served):
    x, raw, scores = served["x"][:5], served["raw"][:5], served["scores"][:5]
    assert alert_reasons(served["model"], x, raw, scores, None) == [""] * 5
    assert feature_names_for(len(FEATURE_NAMES)) == FEATURE_NAMES
    assert feature_names_for(len(CARD_FEATURE_NAMES)) == CARD_FEATURE_NAMES
    assert feature_names_for(2) == ["feature_0", "feature_1"]
    with pytest.raises(ValueError, match="the number of reasons must be 0 or more, got -1"):
        alert_reasons(served["model"], x, raw, scores, 0.5, top_k=-1)

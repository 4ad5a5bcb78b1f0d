"""Scoring at volume: a CSV, a Parquet file or a directory, streamed in batches."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from bank_node.baseline import default_policy, save_model
from bank_node.cli import main
from bank_node.config import ConfigError
from bank_node.data import DataError, load_transactions
from bank_node.features_duckdb import EngineSettings
from bank_node.features_numpy import frame_features
from bank_node.score_stream import score_input
from bank_node.scoring_model import ScoringModel, load_scoring_model
from bank_node.training import Normalizer
from models.drift import DailyCounts, daily_drift, reference_from
from models.features import FEATURE_NAMES, compute_features
from models.nets import build_model
from models.vector import model_to_vector
from simulation.world import generate_world

N = len(FEATURE_NAMES)


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """These tests touch no Django (the repo-wide fixture of this name needs it)."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, n_banks=2, preset="tiny", seed=3)
    return out


@pytest.fixture(scope="module")
def model(world: Path, tmp_path_factory: pytest.TempPathFactory) -> ScoringModel:
    """A normalising model whose threshold (the median score of bank 2) makes many alerts."""
    directory = tmp_path_factory.mktemp("model")
    policy = default_policy()
    weights = model_to_vector(build_model(policy.model_spec, N))
    x = compute_features(load_transactions(world / "bank_2.csv")).astype(np.float64)
    moments = np.concatenate([x.mean(axis=0), (x**2).mean(axis=0)])
    normalizer = Normalizer.from_moments(moments, 1, rows=len(x))
    save_model(directory, weights, policy, None, normalizer)
    untuned = load_scoring_model(directory)
    threshold = float(np.median(untuned.score_frame(load_transactions(world / "bank_2.csv"))))
    save_model(directory, weights, policy, threshold, normalizer)
    return load_scoring_model(directory)


def settings(tmp_path: Path) -> EngineSettings:
    return EngineSettings(memory_limit="512MB", temp_directory=tmp_path / "work")


def scored(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def scored_as_before(model: ScoringModel, source: Path) -> list[dict[str, str]]:
    """What `bank-node score` wrote before streaming: the whole file in one frame."""
    frame = load_transactions(source)
    scores = model.score_frame(frame)
    alerts = model.alerts(scores)
    return [
        {"line": str(int(line)), "score": f"{score:.6f}", "alert": str(int(alert))}
        for line, score, alert in zip(frame.index + 2, scores, alerts, strict=True)
    ]


def test_a_single_csv_is_scored_as_it_was_before_streaming(
    model: ScoringModel, world: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scores.csv"
    summary = score_input(model, world / "bank_2.csv", out, settings=settings(tmp_path))
    ours, before = scored(out), scored_as_before(model, world / "bank_2.csv")
    assert out.read_text().splitlines()[0] == "line,score,alert,model_version,reasons"
    assert [r["line"] for r in ours] == [r["line"] for r in before]
    assert [bool(r["reasons"]) for r in ours] == [r["alert"] == "1" for r in ours]
    assert [r["alert"] for r in ours] == [r["alert"] for r in before]
    # Features differ from the in-memory ones by at most one float32 ulp (sums of amounts,
    # tests/bank_node/test_features_duckdb.py), so a printed score by at most its last digit.
    gap = np.abs(np.array([r["score"] for r in ours], float) - [float(r["score"]) for r in before])
    assert gap.max() <= 1e-6
    assert summary.rows == len(before) and summary.alerts == sum(int(r["alert"]) for r in before)
    assert 0 < summary.alerts < summary.rows
    assert not list((tmp_path / "work").iterdir())  # intermediate files removed


def test_the_numpy_engine_scores_a_file_and_a_directory_as_duckdb_does(
    model: ScoringModel, world: Path, tmp_path: Path
) -> None:
    for source in (world / "bank_2.csv", world):
        duck, numpy = tmp_path / "duck.csv", tmp_path / "numpy.csv"
        score_input(model, source, duck, settings=settings(tmp_path))
        score_input(model, source, numpy, settings=settings(tmp_path), engine="numpy")
        ours, theirs = scored(numpy), scored(duck)
        assert [(r.get("file"), r["line"], r["alert"]) for r in ours] == [
            (r.get("file"), r["line"], r["alert"]) for r in theirs
        ]
        gap = np.abs(
            np.array([r["score"] for r in ours], float) - [float(r["score"]) for r in theirs]
        )
        assert gap.max() <= 1e-6  # DuckDB's sums are within one float32 ulp of numpy's
    assert not list((tmp_path / "work").iterdir())  # intermediate files removed


def test_small_batches_give_the_same_output_as_one_batch(
    model: ScoringModel, world: Path, tmp_path: Path
) -> None:
    one, many = tmp_path / "one.csv", tmp_path / "many.csv"
    score_input(model, world / "bank_1.csv", one, settings=settings(tmp_path))
    score_input(model, world / "bank_1.csv", many, settings=settings(tmp_path), batch_rows=999)
    assert one.read_bytes() == many.read_bytes()


def test_a_directory_is_scored_file_by_file_with_a_file_column(
    model: ScoringModel, world: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scores.csv"
    summary = score_input(model, world, out, settings=settings(tmp_path))
    rows = scored(out)
    assert list(rows[0]) == ["file", "line", "score", "alert", "model_version", "reasons"]
    for name in ("bank_1.csv", "bank_2.csv"):
        lines = [int(r["line"]) for r in rows if r["file"] == name]
        assert lines == list(range(2, len(load_transactions(world / name)) + 2))
    assert summary.rows == len(rows)


def test_a_parquet_file_of_normalised_columns_scores_like_its_csv(
    model: ScoringModel, world: Path, tmp_path: Path
) -> None:
    parquet = tmp_path / "bank_2.parquet"
    load_transactions(world / "bank_2.csv").to_parquet(parquet)
    from_csv, from_parquet = tmp_path / "csv.csv", tmp_path / "parquet.csv"
    score_input(model, world / "bank_2.csv", from_csv, settings=settings(tmp_path))
    score_input(model, parquet, from_parquet, settings=settings(tmp_path))
    a, b = scored(from_csv), scored(from_parquet)
    assert [r["score"] for r in a] == [r["score"] for r in b]
    assert [int(r["line"]) for r in b] == list(range(1, len(a) + 1))  # Parquet: row number


def test_every_row_names_the_model_version_and_a_parquet_output_holds_what_the_csv_does(
    model: ScoringModel, world: Path, tmp_path: Path
) -> None:
    as_csv, as_parquet = tmp_path / "scores.csv", tmp_path / "scores.parquet"
    score_input(model, world / "bank_2.csv", as_csv, settings=settings(tmp_path))
    summary = score_input(model, world / "bank_2.csv", as_parquet, settings=settings(tmp_path))
    rows, table = scored(as_csv), pq.read_table(as_parquet).to_pylist()
    assert model.model_version == "local-only"  # saved by `baseline --save`: no round
    assert {r["model_version"] for r in rows} == {"local-only"}
    assert list(table[0]) == ["line", "score", "alert", "model_version", "reasons"]
    assert summary.rows == len(table) == len(rows)
    for row, record in zip(rows, table, strict=True):
        assert (int(row["line"]), int(row["alert"])) == (record["line"], record["alert"])
        assert (row["model_version"], row["reasons"]) == (
            record["model_version"],
            record["reasons"],
        )
        assert row["score"] == f"{record['score']:.6f}"  # the CSV shows the Parquet double


def test_a_directory_scored_to_parquet_keeps_the_file_column(
    model: ScoringModel, world: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scores.parquet"
    summary = score_input(model, world, out, settings=settings(tmp_path))
    table = pq.read_table(out)
    assert table.column_names == ["file", "line", "score", "alert", "model_version", "reasons"]
    assert set(table.column("file").to_pylist()) == {"bank_1.csv", "bank_2.csv"}
    assert summary.rows == table.num_rows


def test_the_model_version_is_the_registry_version_else_the_round_else_the_label(
    model: ScoringModel,
) -> None:
    assert replace(model, round=4, label="global").model_version == "round-4"
    assert replace(model, round=4, version="round-3").model_version == "round-3"


def test_a_parquet_file_without_the_needed_columns_is_refused_by_name(
    model: ScoringModel, world: Path, tmp_path: Path
) -> None:
    parquet = tmp_path / "partial.parquet"
    load_transactions(world / "bank_2.csv").drop(columns=["amount_paid"]).to_parquet(parquet)
    with pytest.raises(DataError, match="amount_paid"):
        score_input(model, parquet, tmp_path / "out.csv", settings=settings(tmp_path))


def test_a_missing_input_or_an_empty_directory_is_a_data_error(
    model: ScoringModel, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match="does not exist"):
        score_input(model, tmp_path / "nope.csv", tmp_path / "o.csv", settings=settings(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \.csv or \.parquet"):
        score_input(model, tmp_path / "empty", tmp_path / "o.csv", settings=settings(tmp_path))


def test_a_header_only_csv_gives_a_header_only_output(
    model: ScoringModel, world: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text((world / "bank_2.csv").read_text().splitlines()[0] + "\n")
    summary = score_input(model, empty, tmp_path / "out.csv", settings=settings(tmp_path))
    assert summary.rows == 0
    assert (tmp_path / "out.csv").read_text() == "line,score,alert,model_version,reasons\n"
    score_input(model, empty, tmp_path / "out.parquet", settings=settings(tmp_path))
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 0 and "model_version" in table.column_names


def test_a_memory_limit_that_is_not_a_size_is_refused() -> None:
    with pytest.raises(ConfigError, match="expected a size like 2GB"):
        EngineSettings(memory_limit="lots")


def test_the_score_command_scores_a_directory_and_refuses_a_bad_memory_limit(
    model: ScoringModel, world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "credential").write_text("not-a-real-credential")
    config = tmp_path / "node.toml"
    config.write_text(
        'portal_url = "http://127.0.0.1:9"\nbank = "alpha"\ncredential_file = "credential"\n'
        'signing_key_file = "signing.key"\nsecret_context_file = "consortium.secret"\n'
        f'ckks_params_file = "ckks_params.json"\ndata_file = "{world / "bank_1.csv"}"\n'
        'state_dir = "state"\n'
    )
    out = tmp_path / "scores.csv"
    argv = ["score", "--config", str(config), "--model", str(model.source), "--input", str(world)]
    assert main([*argv, "--out", str(out), "--memory-limit", "plenty"]) == 2
    assert "expected a size like 2GB" in capsys.readouterr().err
    assert main([*argv, "--out", str(out), "--memory-limit", "300MB"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (
        printed["rows"]
        == len(scored(out))
        == sum(len(load_transactions(f)) for f in sorted(world.glob("bank_*.csv")))
    )
    by_numpy = tmp_path / "numpy.csv"
    assert main([*argv, "--out", str(by_numpy), "--engine", "numpy"]) == 0
    assert [r["line"] for r in scored(by_numpy)] == [r["line"] for r in scored(out)]


def test_drift_counted_while_streaming_equals_the_same_features_counted_at_once(
    model: ScoringModel, world: Path, tmp_path: Path
) -> None:
    frame = load_transactions(world / "bank_1.csv")
    reference_raw = model.features(frame)
    reference = reference_from(
        reference_raw, model.scores(model.normalise(reference_raw)), FEATURE_NAMES
    )
    counts = DailyCounts(reference)
    score_input(
        model, world / "bank_1.csv", tmp_path / "s.csv", settings=settings(tmp_path),
        batch_rows=999, reasons=0, drift=counts,
    )  # fmt: skip
    # The same engine's (numpy, the default) features of the whole file at once, in memory.
    raw = frame_features(frame)
    scores = model.scores(model.normalise(raw))
    whole = daily_drift(reference, raw, scores, frame["timestamp"].to_numpy())
    assert counts.drift() == whole and len(whole) > 1

"""Bring your own data: quality.py and the demo on a directory of bank CSVs, no manifest."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from bank_node.config import Evaluation
from simulation.bank_data import load_bank
from simulation.datadir import DataDirError, bank_files, typology_manifest
from simulation.formats import as_paysim
from simulation.world import generate_world

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _script(name: str) -> ModuleType:
    """A benchmark script, loaded by path (a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"own_data_{name}", ROOT / "benchmarks" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """Stand in for the repo-wide autouse fixture of that name: no Django here."""


@pytest.fixture(scope="module")
def own_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated world as a bank team would bring it: no manifest, no Typology."""
    world = tmp_path_factory.mktemp("world")
    generate_world(world, n_banks=3, preset="tiny", seed=5)
    out = tmp_path_factory.mktemp("own")
    for path in sorted(world.glob("bank_*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns=["Typology"])
        frame.columns = [c.removesuffix(".1") for c in frame.columns]  # IBM's two "Account"
        frame.to_csv(out / path.name.replace("bank_", "Our Bank "), index=False)
    return out


@pytest.fixture(scope="module")
def paysim_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same kind of small world, each bank's file in the PaySim schema instead."""
    world = tmp_path_factory.mktemp("world-paysim")
    generate_world(world, n_banks=3, preset="tiny", seed=5)
    out = tmp_path_factory.mktemp("paysim")
    for path in sorted(world.glob("bank_*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        as_paysim(frame).to_csv(out / path.name.replace("bank_", "Wallet "), index=False)
    return out


def test_a_directory_without_manifest_lists_every_csv_with_a_portal_slug(own_data: Path):
    files = bank_files(own_data)
    assert [(f.bank_id, f.slug) for f in files] == [
        ("Our Bank 1", "our-bank-1"),
        ("Our Bank 2", "our-bank-2"),
        ("Our Bank 3", "our-bank-3"),
    ]
    manifest, notes = typology_manifest(files, None)
    assert manifest["typologies"] == []
    assert notes == [
        "per-typology figures skipped: no Typology column in "
        "Our Bank 1.csv, Our Bank 2.csv, Our Bank 3.csv"
    ]


def test_an_empty_directory_or_two_files_with_one_slug_are_refused(tmp_path: Path):
    with pytest.raises(DataDirError, match=r"holds no \*\.csv file"):
        bank_files(tmp_path)
    (tmp_path / "Bank A.csv").write_text("x\n")
    (tmp_path / "bank_a.csv").write_text("x\n")
    with pytest.raises(DataDirError, match="give the same bank slug 'bank-a'"):
        bank_files(tmp_path)


def test_quality_compares_local_central_and_federated_on_own_files_without_typologies(
    own_data: Path, tmp_path: Path
):
    argv = [sys.executable, "benchmarks/quality.py", "--data-dir", str(own_data),
            "--no-encrypted", "--rounds", "1", "--local-epochs", "1", "--out", str(tmp_path),
            "--train-before", "2022-10-10", "--evaluate-from", "2022-10-12"]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "note: per-typology figures skipped: no Typology column" in done.stdout
    assert "split: train before 2022-10-10" in done.stdout
    result = json.loads((tmp_path / "quality.json").read_text())
    assert sorted(result["results"]) == ["central", "fed_plain", "fed_xb", "local", "personal"]
    assert sorted(result["personalised"]) == ["Our Bank 1", "Our Bank 2", "Our Bank 3"]
    for column in result["results"].values():
        assert sorted(column) == ["Our Bank 1", "Our Bank 2", "Our Bank 3"]
        assert all(bank["typology_hits"] == {} and bank["auprc"] > 0 for bank in column.values())


def test_quality_compares_the_columns_on_a_directory_of_paysim_files(
    paysim_data: Path, tmp_path: Path
):
    argv = [sys.executable, "benchmarks/quality.py", "--data-dir", str(paysim_data),
            "--no-encrypted", "--rounds", "1", "--local-epochs", "1", "--out", str(tmp_path),
            "--train-before", "2022-10-10"]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = sum(sum(1 for _ in p.open()) - 1 for p in paysim_data.glob("*.csv"))
    assert f"{paysim_data}; {rows:,} transactions; split: train before 2022-10-10" in done.stdout
    result = json.loads((tmp_path / "quality.json").read_text())
    for column in result["results"].values():
        assert sorted(column) == ["Wallet 1", "Wallet 2", "Wallet 3"]
        assert all(bank["auprc"] > 0 for bank in column.values())


def test_quality_names_the_file_and_the_column_a_paysim_file_lacks(
    paysim_data: Path, tmp_path: Path
):
    for path in sorted(paysim_data.glob("*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        if path.name == "Wallet 2.csv":
            frame = frame.drop(columns=["isFraud"])
        frame.to_csv(tmp_path / path.name, index=False)
    argv = [sys.executable, "benchmarks/quality.py", "--data-dir", str(tmp_path),
            "--no-encrypted", "--out", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"quality: error: {tmp_path / 'Wallet 2.csv'}, line 1, column isFraud: "
        "required PaySim column 'isFraud' missing"
    )


def test_quality_refuses_an_evaluate_from_before_train_before(own_data: Path, tmp_path: Path):
    argv = [
        sys.executable,
        "benchmarks/quality.py",
        "--data-dir",
        str(own_data),
        "--no-encrypted",
        "--train-before",
        "2022-10-10",
        "--evaluate-from",
        "2022-10-01",
    ]
    done = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--evaluate-from must be on or after --train-before" in done.stderr


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_the_demo_federates_the_banks_own_files_with_their_date_split(
    own_data: Path, tmp_path: Path
):
    out = tmp_path / "demo"
    argv = [sys.executable, "-m", "simulation", "demo", "--data-dir", str(own_data),
            "--out", str(out), "--rounds", "1", "--local-epochs", "1", "--skip-baselines",
            "--train-before", "2022-10-10", "--timeout", "600"]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=850)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"3 banks' own files from {own_data}" in done.stdout
    assert not (out / "data").exists()  # nothing generated
    results = json.loads((out / "results.json").read_text())
    assert sorted(results["federated"]) == ["our-bank-1", "our-bank-2", "our-bank-3"]
    toml = (out / "banks" / "our-bank-1" / "node.toml").read_text()
    assert '[evaluation]\ntrain_before = "2022-10-10"\nevaluate_from = "2022-10-10"' in toml
    # Each bank fine-tuned the model it serves, chosen on its own validation rows.
    assert sorted(results["personalised"]) == sorted(results["federated"])
    for slug, personal in results["personalised"].items():
        assert personal["val_auprc"][personal["choice"]] == max(personal["val_auprc"].values())
        assert personal["global"]["auprc"] == pytest.approx(results["federated"][slug]["auprc"])
    assert "personalised" in done.stdout.split("Held-out AUPRC per bank", 1)[1].splitlines()[1]

    # The ending: our-bank-1 promoted the federated model and scored through bank-node serve.
    serving = json.loads((out / "serving.json").read_text())
    promoted = (out / "banks" / "our-bank-1" / "state" / "models" / "promoted").read_text()
    assert serving["bank"] == "our-bank-1" and serving["version"] == promoted.strip()
    assert serving["promotion"].startswith(f"promoted {serving['version']} (round ")
    assert len(serving["answers"]) == len(serving["sent"]) == 4 and serving["exit_code"] == 0
    assert [a["id"] for a in serving["answers"]] == [t["id"] for t in serving["sent"]]
    for answer in serving["answers"]:
        assert answer["model"]["version"] == serving["version"]
        assert 0.0 <= answer["score"] <= 1.0
        assert answer["alert"] == (answer["score"] >= answer["model"]["threshold"])
    printed = done.stdout.split("Serving at our-bank-1", 1)[1].splitlines()
    scored = [line for line in printed if f"model {serving['version']}" in line]
    assert len(scored) == 4
    assert any("bank-node serve stopped on SIGTERM, exit code 0" in line for line in printed)

    # The quality benchmark's plaintext twin of this encrypted run: each node's last-round
    # update recomputed in the clear and averaged is the published model up to CKKS error.
    twin_module, columns = _script("quality_twin"), _script("quality_columns")
    evaluation = Evaluation(train_before=date(2022, 10, 10), evaluate_from=date(2022, 10, 10))
    banks = [load_bank(f, evaluation) for f in bank_files(own_data)]
    _, norms = columns.encrypted_models(out, banks, 1)
    twin = twin_module.last_round_twin(out, banks, norms)
    assert twin.max_weight_gap < 1e-5  # a wrong seed, base or normaliser: about 1e-2

"""`python -m simulation` generates worlds; the bank's node neither imports nor offers it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from bank_node.cli import parser as bank_node_parser
from simulation.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """Stand in for the repo-wide autouse fixture of that name: no Django here."""


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    return names


def test_no_bank_node_module_imports_simulation() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "bank_node").rglob("*.py"))
        if any(m.split(".")[0] == "simulation" for m in _imported_modules(path))
    ]
    assert offenders == []


def test_bank_node_has_no_synth_command() -> None:
    with pytest.raises(SystemExit):
        bank_node_parser().parse_args(["synth", "--out", "x"])


def test_synth_writes_the_world_and_prints_its_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["synth", "--out", str(tmp_path), "--banks", "2", "--seed", "5"]) == 0
    printed = capsys.readouterr().out  # the manifest's JSON, cut at 4,000 characters
    written = json.loads((tmp_path / "manifest.json").read_text())
    assert written["n_banks"] == 2 and written["seed"] == 5
    assert printed.startswith("{") and '"n_banks": 2' in printed and '"seed": 5' in printed
    assert sorted(p.name for p in tmp_path.glob("bank_*.csv")) == ["bank_1.csv", "bank_2.csv"]


def test_synth_refuses_an_unknown_preset_with_a_message_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["synth", "--out", str(tmp_path), "--preset", "nope"]) == 2
    assert "unknown preset 'nope'" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.csv"))

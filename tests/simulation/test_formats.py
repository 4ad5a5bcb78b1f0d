"""The PaySim and ULB helpers of simulation/formats.py: one copy, and what it writes."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest

from bank_node.schemas import PAYSIM_START
from simulation import formats
from simulation.formats import PAYSIM_TYPES, as_paysim

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """Stand in for the repo-wide autouse fixture of that name: no Django here."""


def _top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {name.lstrip("_") for name in names}


def test_no_test_module_keeps_its_own_copy_of_a_format_helper():
    helpers = _top_level_names(Path(formats.__file__))
    copies = {
        str(path.relative_to(ROOT)): sorted(_top_level_names(path) & helpers)
        for path in sorted((ROOT / "tests").rglob("*.py"))
    }
    assert {path: names for path, names in copies.items() if names} == {}


def test_as_paysim_keeps_accounts_amounts_and_labels_in_paysim_columns():
    ibm = pd.DataFrame(
        {
            "Timestamp": ["2022/09/01 03:00", "2022/09/02 00:00"],
            "Payment Format": ["Wire", "Cash"],
            "Amount Paid": ["250000.00", "12.50"],
            "Account": ["A1", "A2"],
            "Account.1": ["B1", "B2"],
            "Is Laundering": ["1", "0"],
        }
    )
    paysim = as_paysim(ibm)
    hours = (pd.to_datetime(ibm["Timestamp"]) - PAYSIM_START) // pd.Timedelta(hours=1)
    assert paysim["step"].tolist() == hours.tolist()
    assert paysim["type"].tolist() == [PAYSIM_TYPES["Wire"], PAYSIM_TYPES["Cash"]]
    assert paysim[["nameOrig", "nameDest", "amount"]].values.tolist() == [
        ["A1", "B1", "250000.00"],
        ["A2", "B2", "12.50"],
    ]
    assert paysim["isFraud"].tolist() == ["1", "0"]
    # PaySim's own rule flags transfers of 200,000 or more.
    assert paysim["isFlaggedFraud"].tolist() == ["1", "0"]

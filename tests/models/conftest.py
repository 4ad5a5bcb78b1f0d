"""Fixtures for the pure-ML tests: one generated tiny world, shared by the session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from bank_node.data import load_ibm_csv
from simulation.world import generate_world


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """Stand in for the repo-wide autouse fixture of that name, which needs pytest-django's
    ``settings``; these tests touch no Django and also run with ``-p no:django``."""


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)  # the brief's 2-core machines; also makes timings comparable


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("tiny_world")
    return out, generate_world(out, preset="tiny", seed=0)


@pytest.fixture(scope="session")
def bank_one(tiny_world: tuple[Path, dict[str, Any]]) -> pd.DataFrame:
    out, manifest = tiny_world
    return load_ibm_csv(out / manifest["banks"]["1"]["file"])

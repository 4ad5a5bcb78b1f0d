"""The benchmark scripts, loaded from their files for their tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_script(name: str) -> ModuleType:
    # Loaded by path: the benchmarks are scripts, not a package, and Opacus installs a
    # top-level package named ``benchmarks`` that an import by name would find instead.
    spec = importlib.util.spec_from_file_location(
        f"benchmark_script_{name}", ROOT / "benchmarks" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def round_share() -> ModuleType:
    return _load_script("round_share")


@pytest.fixture(scope="session")
def quality() -> ModuleType:
    return _load_script("quality")


@pytest.fixture(scope="session")
def quality_columns() -> ModuleType:
    return _load_script("quality_columns")


@pytest.fixture(scope="session")
def robustness() -> ModuleType:
    return _load_script("robustness")


@pytest.fixture(scope="session")
def scale() -> ModuleType:
    return _load_script("scale")


@pytest.fixture(scope="session")
def server_opt() -> ModuleType:
    return _load_script("server_opt")


@pytest.fixture(scope="session")
def quality_crossbank() -> ModuleType:
    return _load_script("quality_crossbank")

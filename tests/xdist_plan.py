"""The suite on both cores (pytest-xdist): one thread per worker, shared set-ups kept whole.

``make test`` runs ``pytest -n 2 --dist loadgroup``; a plain ``pytest tests/x`` (no
``-n``) is untouched by everything here. Under ``-n N --dist loadgroup``:

- every worker gets one OpenMP/BLAS thread (two workers on two cores, not 2 x 2 threads);
- a module whose tests share a module-, class- or package-scoped fixture of ours (a live
  portal, a trained model, CKKS keys) is one unit of work, run whole on one worker so that
  the set-up is paid once; so is each directory in ``SHARED_SESSION_DIRS`` (one
  session-scoped set-up for all of it) and each ``xdist_group`` mark; every other test
  is a unit on its own;
- units of multi-process tests (``e2e``) are handed out first, largest first, and the
  many short tests fill in behind them: a long test started last would leave the other
  core idle while it finishes.

Why our own scheduler: xdist 3.8's ``loadgroup`` tags a test's node id with its group,
which pytest 9.2 no longer reads back (``Node.nodeid`` comes from ``Node._id``), so its
groups are silently ignored. Here each worker writes the plan (test -> unit) to a file
the controller created, and the controller's scheduler reads the units from it.

The hooks are imported by ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

# Two workers, two cores: more threads per worker only make them preempt each other.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

# Directories whose tests share session-scoped fixtures that start real processes, to be
# started once: tests/faults has its own PostgreSQL server, portal and scheduler, and each
# test takes the next round of that one consortium.
SHARED_SESSION_DIRS = ("tests/faults",)

# Fixture scopes that make a module's tests one unit of work.
SHARED_SCOPES = frozenset({"module", "class", "package"})

# Where the workers leave the plan for the controller (set by the controller for them).
PLAN_VARIABLE = "CONSORTIUM_XDIST_PLAN"


def _starts_workers(config: pytest.Config) -> bool:
    """True in the controlling process of an ``-n N`` run (N > 0), before it starts them."""
    workers = getattr(config.option, "numprocesses", None)
    return bool(workers) and not hasattr(config, "workerinput")


def _plans(config: pytest.Config) -> bool:
    """True when the units come from this module (``--dist loadgroup``)."""
    dist = getattr(config.option, "dist", "no")
    return dist == "loadgroup" or bool(getattr(config.option, "loadgroup", False))


def pytest_configure(config: pytest.Config) -> None:
    # The workers inherit this process's environment when xdist starts them (at session
    # start, after configure), and torch and BLAS read these variables when they load.
    if not _starts_workers(config):
        return
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    if _plans(config):
        plan_dir = Path(tempfile.mkdtemp(prefix="consortium-xdist-plan-"))
        config.add_cleanup(lambda: shutil.rmtree(plan_dir, ignore_errors=True))
        os.environ[PLAN_VARIABLE] = str(plan_dir / "plan.json")


def group_of(item: pytest.Item) -> str | None:
    """The unit of work ``item`` belongs to, or None if it is a unit on its own."""
    mark = item.get_closest_marker("xdist_group")
    if mark is not None:
        return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
    module = item.nodeid.split("::", 1)[0]
    for directory in SHARED_SESSION_DIRS:
        if module.startswith(f"{directory}/"):
            return directory
    info = getattr(item, "_fixtureinfo", None)
    for definitions in info.name2fixturedefs.values() if info else ():
        # The last definition is the one in force; ours have a baseid under tests/,
        # pytest's and the plugins' (live_server, browser, ...) an empty one.
        fixture = definitions[-1]
        if fixture.scope in SHARED_SCOPES and fixture.baseid.startswith("tests"):
            return module
    return None


def ordered(items: list[pytest.Item], units: dict[str, str]) -> list[pytest.Item]:
    """``items`` unit by unit: multi-process units first (largest first), then the rest.

    The rest keep pytest-django's order (database tests, then transactional ones, then
    the others) by their first test; a unit's tests run one after the other.
    """
    by_unit: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_unit.setdefault(units[item.nodeid], []).append(item)

    def rank(members: list[pytest.Item]) -> tuple[int, int]:
        if any(item.get_closest_marker("e2e") for item in members):
            return (0, -len(members))
        return (1, 0)

    return [item for members in sorted(by_unit.values(), key=rank) for item in members]


def _write_plan(units: dict[str, str]) -> None:
    """Leave test -> unit for the controller; every worker writes the same, atomically."""
    path = Path(os.environ[PLAN_VARIABLE])
    part = path.with_name(f"{path.name}.{os.environ.get('PYTEST_XDIST_WORKER', 'gw')}")
    part.write_text(json.dumps(units))
    part.replace(path)


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> Generator[None, None, None]:
    result = yield
    if hasattr(config, "workerinput") and _plans(config) and PLAN_VARIABLE in os.environ:
        units = {item.nodeid: group_of(item) or item.nodeid for item in items}
        items[:] = ordered(items, units)
        _write_plan(units)
    return result


class PlannedScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with the units the workers planned (see the docstring)."""

    def __init__(self, config: pytest.Config, log: object | None = None) -> None:
        super().__init__(config, log)
        self._units: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._units is None:
            # Called once every worker has collected, so the plan is on disk by now.
            self._units = json.loads(Path(os.environ[PLAN_VARIABLE]).read_text())
        return self._units[nodeid]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> PlannedScheduling | None:
    if PLAN_VARIABLE not in os.environ or not _plans(config):
        return None
    # The workers' collection is already in the order wanted (``ordered``): xdist must not
    # sort the units by their number of tests instead.
    config.option.loadscopereorder = False
    return PlannedScheduling(config, log)

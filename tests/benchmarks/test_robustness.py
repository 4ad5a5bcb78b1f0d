"""benchmarks/robustness.py at tiny size: each defence catches its attack, and the table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from he.codec import pack_update
from he.params import CkksParams

pytestmark = pytest.mark.filterwarnings("ignore")
ROUNDS = 2  # the attacker plays round 2, after one honest round both runs share


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("robustness")


@pytest.fixture(scope="module")
def tiny(robustness: ModuleType, work: Path) -> Iterator[Any]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as main() and the nodes run: deterministic, and no spinning
    args = robustness.parse(["--preset", "tiny", "--rounds", str(ROUNDS), "--out", str(work)])
    yield robustness.build(args, work)  # generates the tiny world into work/data
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(robustness: ModuleType, tiny: Any) -> dict[str, Any]:
    modes = ["count_x1000", "foreign_key", "random_coefficients", "scaled_x100"]
    return robustness.run_modes(tiny, modes, ROUNDS, {ROUNDS})


@pytest.mark.parametrize(
    ("mode", "caught"),
    [
        ("count_x1000", "refused (aggregate_count)"),
        ("foreign_key", "refused (aggregate_integrity)"),
        ("random_coefficients", "refused (aggregate_integrity)"),
        ("scaled_x100", "refused (update_too_large)"),
    ],
)
def test_each_attack_is_caught_by_its_defence_and_never_becomes_the_base(
    robustness: ModuleType, runs: dict[str, Any], mode: str, caught: str
) -> None:
    fed, clean = runs[mode], runs["none"]
    assert fed.events == ["adopted", caught]
    assert robustness.caught_by(fed, {ROUNDS}) == caught
    # The refused candidate is not the next base: every attacked run keeps round 1's
    # model, which the run without an attacker moved on from.
    assert clean.events == ["adopted", "adopted"]
    assert np.array_equal(fed.base, runs["count_x1000"].base)
    assert not np.array_equal(fed.base, clean.base)


def test_the_run_without_an_attacker_learns(robustness: ModuleType, tiny: Any, runs: dict) -> None:
    start = robustness.mean_auprc(tiny, None)
    assert robustness.mean_auprc(tiny, runs["none"].base) > start + 0.1


def test_the_table_marks_a_mode_further_than_the_target_as_a_miss(
    robustness: ModuleType, tiny: Any, runs: dict[str, Any]
) -> None:
    lines, figures = robustness.table(tiny, runs, {ROUNDS})
    assert lines[0].split()[:3] == ["mode", "caught", "by"]
    for mode, fig in figures.items():
        assert fig["pass"] == (fig["diff"] >= -robustness.TARGET), mode
    assert figures["none"]["diff"] == 0.0 and figures["none"]["pass"]


def test_a_run_writes_its_figures_and_strict_exits_non_zero_on_a_miss(
    robustness: ModuleType, tmp_path: Path, tiny: Any, work: Path
) -> None:
    # One refused round of two leaves the model a round behind: a miss on this tiny run.
    argv = ["--preset", "tiny", "--rounds", str(ROUNDS), "--modes", "foreign_key", "--strict"]
    assert robustness.main([*argv, "--data-dir", str(work / "data"), "--out", str(tmp_path)]) == 1
    figures = json.loads((tmp_path / "robustness.json").read_text())["modes"]
    assert set(figures) == {"none", "foreign_key"}
    assert figures["foreign_key"]["caught_by"] == "refused (aggregate_integrity)"
    assert not figures["foreign_key"]["pass"]


@pytest.mark.parametrize(
    ("passes", "strict", "code"),
    [([True, True], True, 0), ([True, False], True, 1), ([True, False], False, 0)],
)
def test_only_strict_turns_a_miss_into_a_non_zero_exit(
    robustness: ModuleType, passes: list[bool], strict: bool, code: int
) -> None:
    figures = {f"m{i}": {"pass": p} for i, p in enumerate(passes)}
    assert robustness.exit_code(figures, strict) == code


@pytest.mark.parametrize(
    ("spec", "rounds", "expected"),
    [("mid", 6, {4}), ("mid", 2, {2}), ("mid", 1, {1}), ("all", 3, {1, 2, 3}), ("2,9", 6, {2})],
)
def test_the_attack_rounds_are_the_middle_one_all_or_a_list(
    robustness: ModuleType, spec: str, rounds: int, expected: set[int]
) -> None:
    assert robustness.attack_rounds_of(spec, rounds) == expected


def _attack(robustness: ModuleType, mode: str | None) -> Any:
    return robustness.Attack(mode, np.full(4, 0.5), 2)


def test_an_honest_upload_is_the_nodes_packing(robustness: ModuleType) -> None:
    w = np.array([0.1, -0.2, 0.3, 0.4])
    got = _attack(robustness, None).plaintext(w, 10, 1.25)
    assert np.array_equal(got, pack_update(w, 10, 1.25, 2))


@pytest.mark.parametrize(("mode", "count"), [("count_x1000", 5000.0), ("negative_count", -5000.0)])
def test_a_count_attack_scales_the_count_slot_and_the_weights_with_it(
    robustness: ModuleType, mode: str, count: float
) -> None:
    w = np.array([0.1, -0.2, 0.3, 0.4])
    got = _attack(robustness, mode).plaintext(w, 10, 1.25)
    assert got[-2] == count and got[-1] == 1.25
    assert np.allclose(got[:-2], w * count)


@pytest.mark.parametrize(("mode", "factor"), [("scaled_x100", 100.0), ("sign_flip", -1.0)])
def test_a_step_attack_scales_the_step_from_the_base(
    robustness: ModuleType, mode: str, factor: float
) -> None:
    w = np.array([0.6, 0.4, 0.5, 0.7])
    got = _attack(robustness, mode).plaintext(w, 10, 1.25)
    assert np.allclose(got[:-2] / got[-2], 0.5 + factor * (w - 0.5))


def test_an_overflow_upload_exceeds_what_the_data_prime_holds(robustness: ModuleType) -> None:
    got = _attack(robustness, "overflow").plaintext(np.zeros(4), 10, 1.25)
    assert got.size == 6 and np.all(np.abs(got) > CkksParams().max_plain_magnitude)

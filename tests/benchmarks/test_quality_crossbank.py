"""benchmarks/quality_crossbank.py: the "fed + cross-bank" column trains on the rows a node's
sketch policy gives it, under a valid widened policy, and ``--reuse-demo`` reloads it."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from bank_node.config import Evaluation
from bank_node.data import load_transactions
from bank_node.sketch_round import (
    others_sketch_file,
    sketched_local_data,
    spec_dates,
    spec_shape,
    spec_sigma,
)
from he.codec import TRAILER_SLOTS
from models.counterparty_sketch import SKETCH_FEATURE_NAMES, build_sketches
from models.features import FEATURE_NAMES
from models.nets import build_model
from models.vector import model_to_vector, vector_length
from protocol import PolicySnapshot
from simulation.bank_data import load_bank
from simulation.datadir import bank_files
from simulation.world import generate_world

SEED = 3


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """Stand in for the repo-wide autouse fixture of that name: no Django here."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, n_banks=3, preset="tiny", seed=11)
    return out


def test_each_banks_rows_are_the_ones_its_node_reads_from_a_kept_sketch_round(
    quality_crossbank: ModuleType, world: Path, tmp_path: Path
) -> None:
    files, evaluation = bank_files(world), Evaluation()
    banks = [load_bank(f, evaluation) for f in files]
    wide, spec = quality_crossbank.cross_bank_banks(banks, files, evaluation, 1.0, SEED)
    frames = [load_transactions(f.path) for f in files]
    others = quality_crossbank.others_sketches(frames, spec, SEED)
    key = quality_crossbank.bench_key(SEED)
    for i, (file, bank, mine) in enumerate(zip(files, banks, wide, strict=True)):
        state = tmp_path / f"state-{i}"  # what the node keeps once the sketch round is published
        state.mkdir()
        np.save(others_sketch_file(state, 7), others[i])
        others_sketch_file(state, 7).with_suffix(".json").write_text(json.dumps(spec.to_dict()))
        node = sketched_local_data(file.path, evaluation, state, 7, key, bank.data)
        for part in ("x_train", "x_val", "x_test", "y_train", "y_val", "y_test"):
            np.testing.assert_array_equal(getattr(mine.data, part), getattr(node, part), part)
        assert mine.data.x_train.shape[1] == len(FEATURE_NAMES) + len(SKETCH_FEATURE_NAMES)
        np.testing.assert_array_equal(mine.data.x_test[:, : len(FEATURE_NAMES)], bank.data.x_test)
        assert np.abs(mine.data.x_train[:, len(FEATURE_NAMES) :]).sum() > 0  # counts, not zeros


def test_the_sketch_policy_is_the_benchmarks_own_widened_by_the_six_columns(
    quality: ModuleType, quality_crossbank: ModuleType, world: Path
) -> None:
    frames = [load_transactions(f.path) for f in bank_files(world)]
    spec = quality_crossbank.sketch_spec(frames, 0.5)
    policy = quality_crossbank.sketch_policy(
        quality_crossbank.policy_of(quality.HYPER), spec, quality.HYPER
    )
    width = len(FEATURE_NAMES) + len(SKETCH_FEATURE_NAMES)
    assert policy.n_features == width and policy.counterparty_sketch == spec
    assert spec.epsilon == 0.5 and len(spec.as_of) >= 2
    model = build_model(quality.HYPER["model_spec"], width)
    assert policy.vector_length == vector_length(model) + TRAILER_SLOTS
    assert PolicySnapshot.from_dict(policy.to_dict()) == policy  # the protocol accepts it
    assert policy.fedprox_mu == quality.HYPER["fedprox_mu"]


def test_reuse_reloads_the_saved_column_and_a_new_epsilon_trains_again(
    quality: ModuleType, quality_crossbank: ModuleType, world: Path, tmp_path: Path
) -> None:
    files, evaluation = bank_files(world), Evaluation()
    banks = [load_bank(f, evaluation) for f in files]
    hyper = {**quality.HYPER, "rounds": 1, "local_epochs": 1}
    key = {"hyper": hyper, "stats_round": 1}

    def column(epsilon: float, reuse: bool) -> np.ndarray:
        models, norms, wide = quality_crossbank.cross_bank_column(
            tmp_path, key, banks, files, evaluation, hyper, (epsilon, SEED, 1), reuse
        )
        assert len(models) == len(norms) == len(wide) == len(banks)
        return model_to_vector(models[0])

    first = column(1.0, reuse=False)
    np.save(tmp_path / "crossbank.npy", first + 1.0)  # a saved column reads back as saved
    np.testing.assert_allclose(column(1.0, reuse=True), first + 1.0, atol=1e-6)
    again = column(0.5, reuse=True)  # another ε: another key, so it trains
    assert np.abs(again - first).max() > 0 and np.abs(again - (first + 1.0)).max() > 0.5
    assert json.loads((tmp_path / "crossbank.json").read_text())["sketch"] == [0.5, SEED]


def test_a_noise_split_shares_the_noise_and_exact_sketches_carry_none(
    quality_crossbank: ModuleType, world: Path
) -> None:
    frames = [load_transactions(f.path) for f in bank_files(world)]
    alone = quality_crossbank.sketch_spec(frames, 1.0)
    shared = quality_crossbank.sketch_spec(frames, 1.0, noise_split=2)
    key, dates = quality_crossbank.bench_key(SEED), spec_dates(alone)
    own = [build_sketches(f, key, spec_shape(alone), dates) for f in frames]
    exact = quality_crossbank.others_sketches(frames, alone, SEED, exact=True)
    np.testing.assert_allclose(exact[0], own[1] + own[2])  # the others' counts, no noise
    residual = {
        t: np.std(quality_crossbank.others_sketches(frames, spec, SEED)[0] - exact[0])
        for t, spec in ((1, alone), (2, shared))
    }
    # Two other banks' noise in bank 0's view: sqrt(2) sigma alone, sigma split over two.
    assert residual[1] == pytest.approx(np.sqrt(2) * spec_sigma(alone), rel=0.05)
    assert residual[2] == pytest.approx(spec_sigma(shared), rel=0.05)

"""The feature-set registry: each set's width, columns and function agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bank_node.data import load_transactions
from bank_node.explain import feature_names_for
from models.feature_sets import (
    FEATURE_SETS,
    PAYSIM_EXTRA_NAMES,
    compute_paysim_features,
    feature_set,
)
from models.features import CARD_FEATURE_NAMES, FEATURE_NAMES, compute_features
from simulation.formats import paysim_files, ulb_files


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """Stand in for the repo-wide autouse fixture of that name: no Django here."""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("formats")
    paysim = paysim_files(base / "paysim", n_banks=3, seed=3)[0]
    ulb = ulb_files(base / "ulb", n_banks=1, rows=300, seed=3)[0]
    ibm = sorted((base / "paysim" / "ibm-world").glob("bank_*.csv"))[0]
    return {"ibm": ibm, "paysim": paysim, "ulb": ulb}


def test_the_registry_names_aml_card_and_paysim_sets_with_their_widths():
    assert feature_set("aml-v1").feature_names == tuple(FEATURE_NAMES)
    assert feature_set("card-v1").feature_names == tuple(CARD_FEATURE_NAMES)
    assert feature_set("paysim-v1").n_features == len(FEATURE_NAMES) + len(PAYSIM_EXTRA_NAMES)
    assert all(name == s.name for name, s in FEATURE_SETS.items())


def test_an_unknown_set_is_a_value_error_listing_the_known_ones():
    with pytest.raises(ValueError, match="known: aml-v1, card-v1, paysim-v1"):
        feature_set("swift-v9")


@pytest.mark.parametrize(
    ("fmt", "usable"),
    [
        ("ibm", {"aml-v1"}),
        ("paysim", {"aml-v1", "paysim-v1"}),
        ("ulb", {"aml-v1", "card-v1"}),
    ],
)
def test_each_format_has_the_columns_of_exactly_the_sets_it_can_join(files, fmt, usable):
    frame = load_transactions(files[fmt])
    assert {n for n, s in FEATURE_SETS.items() if not s.missing(frame.columns)} == usable


@pytest.mark.parametrize("fmt", ["ibm", "paysim", "ulb"])
def test_every_usable_set_gives_its_own_width_in_row_order(files, fmt):
    frame = load_transactions(files[fmt])
    for spec in FEATURE_SETS.values():
        if spec.missing(frame.columns):
            continue
        matrix = spec.compute(frame)
        assert matrix.shape == (len(frame), spec.n_features) and matrix.dtype == np.float32
        assert np.isfinite(matrix).all()


def test_paysim_features_are_the_account_features_then_type_one_hot_and_rule_flag(files):
    frame = load_transactions(files["paysim"])
    matrix = compute_paysim_features(frame)
    width = len(FEATURE_NAMES)
    np.testing.assert_array_equal(matrix[:, :width], compute_features(frame))
    one_hot = matrix[:, width : width + 5]
    assert (one_hot.sum(axis=1) == 1).all()
    transfer = PAYSIM_EXTRA_NAMES.index("type_transfer")
    assert (one_hot[:, transfer] == (frame["transaction_type"] == "TRANSFER")).all()
    np.testing.assert_array_equal(matrix[:, -1], frame["rule_flag"].to_numpy())
    assert matrix[:, -1].any()  # the fixture's rule flags some large amounts


def test_every_set_has_its_own_width_so_a_models_width_names_its_features():
    assert len({s.n_features for s in FEATURE_SETS.values()}) == len(FEATURE_SETS)
    for spec in FEATURE_SETS.values():
        assert feature_names_for(spec.n_features) == list(spec.feature_names)

"""A passport's ``feature_set`` is the digest of the exact columns its model reads.

A sketch model reads its feature set's columns and the cross-bank ones, so its digest is not
a plain model's; a plain model's digest is the one passports always carried. Loading a model
for scoring checks the digest its records hold against the columns its policy makes every
scorer feed, and refuses the two files' disagreement with both named.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bank_node.baseline import default_policy, save_model
from bank_node.config import ConfigError
from bank_node.passport import (
    PASSPORT_FILE,
    feature_set_version,
    inputs_version,
    passport_for,
    policy_inputs_version,
    write_passport,
)
from bank_node.scoring_model import MODEL_META, load_scoring_model
from bank_node.serve import ModelHolder
from he.codec import TRAILER_SLOTS
from models.counterparty_sketch import SKETCH_FEATURE_NAMES
from models.feature_sets import FEATURE_SETS
from models.features import FEATURE_NAMES
from models.nets import build_model
from models.vector import model_to_vector, vector_length
from protocol import PolicySnapshot, RoundInfo, SketchSpec
from tests.protocol.messages import round_dict, sketch_dict

SPEC = SketchSpec.from_dict(sketch_dict())
# The digests main wrote before sketch columns counted (sha256 of the names joined by ","):
# every passport and registry already on disk carries one of these.
BEFORE = {
    "aml-v1": "sha256:8b6bffbb1be99cd2",
    "card-v1": "sha256:272d62106ecea8c9",
    "paysim-v1": "sha256:0b5d5e5cb6668d9e",
}


def sketch_policy(spec: SketchSpec = SPEC) -> PolicySnapshot:
    plain = default_policy()
    width = plain.n_features + len(SKETCH_FEATURE_NAMES)
    length = vector_length(build_model(plain.model_spec, width)) + TRAILER_SLOTS
    return dataclasses.replace(
        plain, counterparty_sketch=spec, n_features=width, vector_length=length
    )


def _round(policy: PolicySnapshot) -> RoundInfo:
    return RoundInfo.from_dict(round_dict(number=7, state="published", policy=policy.to_dict()))


def _saved(directory: Path, policy: PolicySnapshot) -> Path:
    weights = model_to_vector(build_model(policy.model_spec, policy.n_features))
    save_model(directory, weights, policy, 0.5, None)
    return directory


@pytest.mark.parametrize("name", sorted(FEATURE_SETS))
def test_a_plain_policys_digest_is_the_one_passports_always_carried(name):
    assert set(BEFORE) == set(FEATURE_SETS)
    assert inputs_version(name, None) == BEFORE[name]
    assert inputs_version(name, None) == feature_set_version(FEATURE_SETS[name].feature_names)


def test_a_plain_rounds_passport_keeps_the_digest_of_its_feature_set():
    passport = passport_for(_round(default_policy()), "alpha", {}, 0.5)
    assert passport.feature_set == BEFORE["aml-v1"] == feature_set_version()


def test_a_sketch_rounds_passport_digests_the_cross_bank_columns_too():
    passport = passport_for(_round(sketch_policy()), "alpha", {}, 0.5)
    assert passport.feature_set == inputs_version("aml-v1", SPEC)
    assert passport.feature_set not in BEFORE.values()
    # Not a digest of the 50 names alone either: the spec is in it.
    assert passport.feature_set != feature_set_version([*FEATURE_NAMES, *SKETCH_FEATURE_NAMES])


@pytest.mark.parametrize(
    "change",
    [
        {"as_of": ["2022-09-08"]},
        {"window_days": 7},
        {"label_delay_days": 3},
        {"depth": 3},
        {"width": 128},
        {"epsilon": 0.5},
        {"delta": 1e-7},
    ],
    ids=lambda change: next(iter(change)),
)
def test_every_field_of_the_sketch_spec_changes_the_digest(change):
    other = SketchSpec.from_dict(sketch_dict(**change))
    assert inputs_version("aml-v1", other) != inputs_version("aml-v1", SPEC)


def test_a_saved_model_records_the_digest_of_what_it_reads_and_loads(tmp_path: Path):
    directory = _saved(tmp_path, default_policy())
    meta = json.loads((directory / MODEL_META).read_text())
    assert meta["feature_set"] == BEFORE["aml-v1"]
    assert load_scoring_model(directory).feature_names == FEATURE_NAMES


def test_a_plain_model_whose_passport_says_cross_bank_columns_is_refused(tmp_path: Path):
    directory = _saved(tmp_path, default_policy())
    write_passport(directory, passport_for(_round(sketch_policy()), "alpha", {}, 0.5))
    with pytest.raises(ConfigError) as err:
        load_scoring_model(directory)
    message = str(err.value)
    assert f"{PASSPORT_FILE}: the model was trained on other columns (cross-bank" in message
    assert "makes every scorer feed it feature set 'aml-v1' (44 columns) only" in message


def test_serve_refuses_such_a_model_and_says_why(tmp_path: Path):
    directory = _saved(tmp_path, default_policy())
    write_passport(directory, passport_for(_round(sketch_policy()), "alpha", {}, 0.5))
    holder = ModelHolder(directory)
    assert holder.load() is False and holder.model is None
    assert f"{PASSPORT_FILE}: the model was trained on other columns" in (holder.problem or "")


def test_a_sketch_model_whose_passport_says_its_feature_set_only_is_refused(tmp_path: Path):
    # Refused before the cross-bank columns are looked for: no node state is needed.
    directory = _saved(tmp_path, sketch_policy())
    write_passport(directory, passport_for(_round(default_policy()), "alpha", {}, 0.5))
    with pytest.raises(ConfigError) as err:
        load_scoring_model(directory)
    message = str(err.value)
    assert f"{PASSPORT_FILE}: the model was trained on feature set 'aml-v1' only" in message
    assert "and 6 cross-bank sketch columns" in message and "bank-node models list" in message


def test_a_sketch_model_of_another_spec_than_its_passports_is_refused(tmp_path: Path):
    directory = _saved(tmp_path, sketch_policy())
    other = sketch_policy(dataclasses.replace(SPEC, window_days=7))
    write_passport(directory, passport_for(_round(other), "alpha", {}, 0.5))
    with pytest.raises(ConfigError, match="trained on other columns"):
        load_scoring_model(directory)


def test_a_description_whose_recorded_inputs_are_not_its_policys_is_refused(tmp_path: Path):
    directory = _saved(tmp_path, default_policy())
    meta = json.loads((directory / MODEL_META).read_text())
    meta["feature_set"] = inputs_version("aml-v1", SPEC)
    (directory / MODEL_META).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=rf"{MODEL_META}: the model was trained on other"):
        load_scoring_model(directory)


def test_a_model_saved_before_descriptions_recorded_inputs_still_loads(tmp_path: Path):
    directory = _saved(tmp_path, default_policy())
    meta = json.loads((directory / MODEL_META).read_text())
    del meta["feature_set"]
    (directory / MODEL_META).write_text(json.dumps(meta))
    assert load_scoring_model(directory).net is not None


def test_a_sketch_models_passport_written_before_the_fix_is_read_by_its_policy_digest(
    tmp_path: Path,
):
    directory = _saved(tmp_path, sketch_policy())
    passport = passport_for(_round(sketch_policy()), "alpha", {}, 0.5)
    old = dataclasses.replace(passport, feature_set=BEFORE["aml-v1"])  # as main wrote it
    write_passport(directory, old)
    # Past the inputs check: what stops it now is the missing node state, as for any
    # sketch model scored without one (scored with it: test_score_sketch.py).
    with pytest.raises(ConfigError, match="sketch rounds and keys of a node's state_dir"):
        load_scoring_model(directory)


def test_the_digest_of_a_policy_is_that_of_its_feature_set_and_spec():
    assert policy_inputs_version(default_policy()) == BEFORE["aml-v1"]
    assert policy_inputs_version(sketch_policy()) == inputs_version("aml-v1", SPEC)
    assert all(inputs_version(n, SPEC) != v for n, v in BEFORE.items())

"""Every committed fuzz seed, replayed in-process on each test run (fast; no atheris).

The seeds include the inputs the fuzzers found (see make_corpus.py); this keeps them fixed.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from typing import Any

import pytest

from bank_node.data import DataError, load_transactions
from he.errors import UpdateInvalid
from he.keys import fingerprint, load_public_context
from he.params import CkksParams
from he.validate import validate_vector

HERE = Path(__file__).resolve().parent
LENGTH = 370  # as in make_corpus.py


@pytest.mark.parametrize(
    "seed", sorted((HERE / "corpus" / "validate").iterdir()), ids=lambda p: p.name
)
def test_a_seed_is_either_valid_or_refused_with_update_invalid(seed):
    public = (HERE / "data" / "public_context.bin").read_bytes()
    params = CkksParams()
    ctx = load_public_context(public, params)
    try:
        checked = validate_vector(
            io.BytesIO(seed.read_bytes()),
            ctx,
            params,
            fingerprint=fingerprint(public),
            expected_length=LENGTH,
        )
    except UpdateInvalid as exc:
        assert str(exc)
    else:
        assert seed.name == "valid" and checked.length == LENGTH


@pytest.mark.parametrize(
    "seed", sorted((HERE / "corpus" / "loaders").iterdir()), ids=lambda p: p.name
)
def test_a_loader_seed_loads_or_is_refused_with_data_error(seed):
    try:
        frame = load_transactions(seed, chunksize=2)
    except DataError as exc:
        assert str(seed) in str(exc)
    else:
        assert "label" in frame.columns


def _harness(name: str) -> Any:
    """A harness module, loaded fresh (its counters at zero); atheris only instruments it."""
    spec = importlib.util.spec_from_file_location(name, HERE / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seeds(target: str) -> list[Path]:
    return sorted((HERE / "corpus" / target).iterdir())


def test_every_portal_answer_seed_is_parsed_or_refused_and_the_well_formed_ones_parse():
    harness = _harness("fuzz_portal_answers.py")
    for seed in _seeds("portal"):
        harness.one(seed.read_bytes())  # raises on anything but the node's refusals
    # All but the error shape (a 400) are well-formed answers that pass the first checks.
    assert harness.PARSED[0] == len(_seeds("portal")) - 1


def test_every_aggregate_seed_is_refused_or_becomes_a_model_and_some_reach_the_model():
    harness = _harness("fuzz_aggregates.py")
    for seed in _seeds("aggregates"):
        harness.one(seed.read_bytes())  # raises on anything but AggregateRejected/Refused
    assert harness.REACHED["model"] >= 4

"""Every committed fuzz seed, replayed in-process on each test run (fast; no atheris).

The seeds include the inputs the fuzzers found (see make_corpus.py); this keeps them fixed.
"""

from __future__ import annotations

import io
from pathlib import Path

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

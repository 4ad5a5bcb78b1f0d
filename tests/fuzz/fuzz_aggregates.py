"""atheris harness for the node's handling of decrypted aggregate vectors (issue 13, item 1).

    .venv/bin/python tests/fuzz/fuzz_aggregates.py [libFuzzer flags] CORPUS

Each input is a decrypted plaintext and what the node knows around it: the count unit,
the consortium total, the guardrail, the vector's values (any float64, NaN and inf
included). Half of the inputs get the correct integrity tag written into their last slot and
a whole count, so that the fuzzer also reaches past ``check_aggregate`` (a member computes
the tag; an attacker that cannot would stop there), and half have the policy's length. The vector then goes through
``check_aggregate``, ``aggregate_guard.check_global_model`` against the previous model, and
is built into the policy's model and scored, as ``evaluate_published`` does. A crash is
any exception other than ``AggregateRejected`` or ``Refused``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

with atheris.instrument_imports(include=["bank_node.aggregate_guard", "he.integrity"]):
    from bank_node.aggregate_guard import Expected, check_global_model, initial_weights
    from bank_node.checks import Refused
    from bank_node.training import model_from_vector
    from he.integrity import AggregateRejected, check_aggregate, expected_tag_sum

# A tiny model keeps one input fast: 3 features, one hidden layer of 2 (11 parameters).
SPEC = {"kind": "mlp", "hidden": [2], "seed": 1, "loss": "bce"}
FEATURES = 3
BANKS = ("bank-a", "bank-b", "bank-c")
KEY, EPOCH, ROUND = b"k" * 32, "ab" * 32, 7
PREVIOUS = initial_weights(ROUND, SPEC, FEATURES)
LENGTH = PREVIOUS.size + 2  # the weights, the count slot, the tag slot
REACHED = {"checked": 0, "model": 0}  # how deep inputs get (read by a test, not by atheris)
X = np.random.default_rng(0).normal(size=(8, FEATURES)).astype(np.float32)


def one(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    fix_tag = fdp.ConsumeBool()
    unit = 1 << fdp.ConsumeIntInRange(0, 12)
    total = fdp.ConsumeIntInRange(0, 2**40)
    ratio = fdp.ConsumeProbability() * 10 if fdp.ConsumeBool() else None
    size = LENGTH if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 40)
    values = np.asarray(fdp.ConsumeFloatList(size), dtype=np.float64)
    if fix_tag and values.size >= 2:  # a member's sum: the right tag, a whole count
        values[-1] = expected_tag_sum(KEY, EPOCH, ROUND, BANKS)
        count = values[-2]
        values[-2] = np.rint(min(abs(count), 1e12)) if np.isfinite(count) else count
    REACHED["checked"] += 1
    try:
        weights, rows = check_aggregate(values, BANKS, KEY, EPOCH, ROUND, unit)
        expected = Expected(ROUND, SPEC, FEATURES, len(BANKS), unit, total or None, PREVIOUS, ratio)
        check_global_model(expected, weights, rows)
    except (AggregateRejected, Refused) as exc:
        assert str(exc)
        return
    REACHED["model"] += 1
    model = model_from_vector(SPEC, FEATURES, weights)  # what the node evaluates
    with torch.no_grad():
        assert model(torch.from_numpy(X)).shape[0] == X.shape[0]


def main() -> None:
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

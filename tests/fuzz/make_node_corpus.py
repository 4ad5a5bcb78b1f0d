"""Write the seed corpus of the node's harnesses: portal answers and decrypted aggregates.

    .venv/bin/python tests/fuzz/make_node_corpus.py

Writes tests/fuzz/corpus/{portal,aggregates}/. A portal seed is a call selector byte, a
status selector byte (0: 200) and a body; see fuzz_portal_answers.py. An aggregate seed is
in atheris's FuzzedDataProvider encoding, which has no writer: besides two fixed ones, the
seeds are the first random inputs that get through every check to the model.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from tests.protocol.messages import manifest_dict, round_dict  # noqa: E402

# Call selectors, in fuzz_portal_answers.CALLS order.
CURRENT, ROUND, ROUNDS, COHORT_KEYS, UNMASK, ROSTER, DISPUTE, ME, KEY_EPOCH = range(9)


def _record() -> dict[str, Any]:
    """A v2 manifest's secure-aggregation record (shape only; signatures are not checked)."""
    key = {"mask_public_key": "AAAA", "seed_commitment": "ab" * 32, "signature": "c2ln"}
    reveal = {
        "bank": "alpha",
        "survivors": ["alpha", "beta", "gamma"],
        "dropped": [],
        "key_shares": {},
        "seed_shares": {"alpha": "AAAA", "beta": "AAAA", "gamma": "AAAA"},
        "signature": "c2ln",
    }
    banks = ["alpha", "beta", "gamma"]
    return {
        "consortium": "consortium-1",
        "threshold": 2,
        "cohort": banks,
        "keys": [{"bank": b, **key} for b in banks],
        "survivors": banks,
        "dropped": [],
        "reveals": [reveal],
    }


def portal_seeds() -> dict[str, tuple[int, int, dict[str, Any] | list[Any]]]:
    """name -> (call, status selector, body); status selector 4 is a 400 (error shape)."""
    inputs = [
        {"bank": b, "digest": f"{i:02d}" * 32, "signature": "c2ln"}
        for i, b in enumerate(("alpha", "beta", "gamma"))
    ]
    published = round_dict(
        number=7, state="published", manifest=manifest_dict(round=7, inputs=inputs)
    )
    v2 = round_dict(
        number=7,
        state="published",
        manifest=manifest_dict(round=7, inputs=inputs, secure_aggregation=_record()),
    )
    page = {"count": 1, "next": None, "previous": None, "results": [published]}
    cohort = {
        "round": 7,
        "threshold": 2,
        "cohort": ["alpha", "beta", "gamma"],
        "keys": _record()["keys"],
        "shares_for_you": {"beta": "AAAA"},
        "final": True,
    }
    unmask = {"round": 7, "threshold": 2, "survivors": ["alpha", "beta"], "dropped": ["gamma"]}
    epoch = {
        "number": 1,
        "fingerprint": "ab" * 32,
        "ckks_params": {"poly_modulus_degree": 4096},
        "active": True,
        "created_at": "2026-12-01T15:00:00Z",
    }
    return {
        "current-open": (CURRENT, 0, round_dict()),
        "round-published": (ROUND, 0, published),
        "round-v2-record": (ROUND, 0, v2),
        "rounds-page": (ROUNDS, 0, page),
        "cohort-keys": (COHORT_KEYS, 0, cohort),
        "unmask-request": (UNMASK, 0, unmask),
        "roster": (ROSTER, 0, {"versions": [{"version": {"number": 1}}], "pending": []}),
        "dispute": (DISPUTE, 0, {"round": 7, "objections": [], "clearances": []}),
        "error-shape": (ME, 4, {"message": "no", "extra": {"field": "x"}}),
        "key-epoch": (KEY_EPOCH, 0, epoch),
    }


def aggregate_seeds() -> dict[str, bytes]:
    """A few fixed inputs, and the first random ones that reach the model (found by search)."""
    seeds = {"empty": b"", "random": bytes(range(256)) * 2}
    harness = _load(HERE / "fuzz_aggregates.py")
    rng = random.Random(1)
    while len(seeds) < 6:
        data = rng.randbytes(rng.randint(0, 300))
        before = harness.REACHED["model"]
        harness.one(data)
        if harness.REACHED["model"] > before:
            seeds[f"reaches-model-{len(seeds) - 1}"] = data
    return seeds


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    portal = HERE / "corpus" / "portal"
    portal.mkdir(parents=True, exist_ok=True)
    for name, (call, status, body) in portal_seeds().items():
        (portal / name).write_bytes(bytes([call, status]) + json.dumps(body).encode())
    aggregates = HERE / "corpus" / "aggregates"
    aggregates.mkdir(parents=True, exist_ok=True)
    for name, data in aggregate_seeds().items():
        (aggregates / name).write_bytes(data)


if __name__ == "__main__":
    main()

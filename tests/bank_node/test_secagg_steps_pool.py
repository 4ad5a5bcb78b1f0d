"""The node's v2 encryption step with worker processes: used when they fit, else in-process."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from bank_node.encrypt_pool import PoolFailed
from bank_node.secagg_steps import SecAggSteps


class FakePool:
    """Stands in for an EncryptPool: records what the step asked of it."""

    def __init__(self, number: int, length: int, fail: bool = False) -> None:
        self.number, self.length, self.fail = number, length, fail
        self.closed = False
        self.encrypted: list[int] = []

    def wait_ready(self) -> None:
        if self.fail:
            raise PoolFailed("an encryption worker failed before the update: gone")

    def encrypt(self, values: np.ndarray, fingerprint: str, out: io.BufferedWriter) -> str:
        self.encrypted.append(values.size)
        out.write(b"CKKSVEC2")
        return "d" * 64

    def close(self) -> None:
        self.closed = True


def _steps(tmp_path: Path) -> SecAggSteps:
    config: Any = SimpleNamespace(state_dir=tmp_path, encrypt_workers=2, bank="alpha")
    return SecAggSteps(config, None, None, lambda: None)  # type: ignore[arg-type]


def _round(number: int) -> Any:
    return SimpleNamespace(number=number, key_epoch="e" * 64)


def test_the_workers_encrypt_the_update_of_their_round_and_are_closed(tmp_path: Path):
    steps, pool = _steps(tmp_path), FakePool(4, 10)
    digest = steps._encrypt_pooled(pool, _round(4), np.zeros(10), tmp_path / "u.ckks2")  # type: ignore[arg-type]
    assert digest == "d" * 64 and pool.encrypted == [10] and pool.closed
    assert (tmp_path / "u.ckks2").read_bytes() == b"CKKSVEC2"


@pytest.mark.parametrize(
    ("pool", "why"),
    [
        (FakePool(3, 10), "started for round 3"),
        (FakePool(4, 99), "99 values"),
        (FakePool(4, 10, fail=True), "failed before the update"),
    ],
    ids=["another round", "another length", "a failed worker"],
)
def test_workers_that_cannot_give_the_update_are_logged_and_left_to_the_node(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, pool: FakePool, why: str
):
    steps = _steps(tmp_path)
    with caplog.at_level(logging.WARNING, logger="bank_node"):
        digest = steps._encrypt_pooled(pool, _round(4), np.zeros(10), tmp_path / "u.ckks2")  # type: ignore[arg-type]
    assert digest is None and pool.encrypted == [] and pool.closed
    assert "encrypting in the node's process" in caplog.text and why in caplog.text

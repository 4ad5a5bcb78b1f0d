"""The node's masks computed on a thread while it trains, and the inline fallback."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
from prometheus_client import REGISTRY

from bank_node.secagg_masks import MaskJob, masks_for
from he.premask import PrecomputedMasks


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"{name}_count", labels) or 0.0


def _masks(length: int, fill: int) -> PrecomputedMasks:
    return PrecomputedMasks(length, np.full((1, 4), fill, dtype=np.uint64))


def _inline(length: int) -> PrecomputedMasks:
    return _masks(length, 9)


def test_masks_computed_in_the_background_are_used_and_timed_as_background() -> None:
    before = _count("bank_node_mask_duration_seconds", where="background")
    waits = _count("bank_node_mask_wait_duration_seconds")
    job = MaskJob(3, 10, lambda: _masks(10, 1))
    masks = masks_for(job, 3, 10, lambda: pytest.fail("computed inline"))
    assert masks.words is not None and int(masks.words[0, 0]) == 1
    assert _count("bank_node_mask_duration_seconds", where="background") == before + 1
    assert _count("bank_node_mask_wait_duration_seconds") == waits + 1


def test_the_encryption_waits_for_masks_still_computing() -> None:
    release = threading.Event()

    def slow() -> PrecomputedMasks:
        release.wait(5)
        return _masks(10, 2)

    job = MaskJob(4, 10, slow)
    threading.Timer(0.05, release.set).start()
    masks = masks_for(job, 4, 10, lambda: pytest.fail("computed inline"))
    assert masks.words is not None and int(masks.words[0, 0]) == 2


def test_a_failed_background_computation_is_logged_and_redone_inline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> PrecomputedMasks:
        raise MemoryError("no room for the masks")

    before = _count("bank_node_mask_duration_seconds", where="inline")
    job = MaskJob(5, 10, broken)
    with caplog.at_level(logging.WARNING, logger="bank_node"):
        masks = masks_for(job, 5, 10, lambda: _inline(10))
    assert masks.words is not None and int(masks.words[0, 0]) == 9
    assert "round 5: computing the masks inline" in caplog.text
    assert "no room for the masks" in caplog.text
    assert _count("bank_node_mask_duration_seconds", where="inline") == before + 1


@pytest.mark.parametrize(
    ("job_round", "job_length", "reason"),
    [(6, 10, "none were started"), (7, 99, "another length")],
)
def test_masks_of_another_round_or_length_are_not_used(
    caplog: pytest.LogCaptureFixture, job_round: int, job_length: int, reason: str
) -> None:
    job = MaskJob(job_round, job_length, lambda: _masks(job_length, 1))
    with caplog.at_level(logging.WARNING, logger="bank_node"):
        masks = masks_for(job, 7, 10, lambda: _inline(10))
    assert masks.length == 10 and masks.words is not None and int(masks.words[0, 0]) == 9
    assert reason in caplog.text


def test_without_a_job_the_masks_are_computed_inline(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bank_node"):
        masks = masks_for(None, 8, 10, lambda: _inline(10))
    assert masks.length == 10
    assert "none were started in the background" in caplog.text

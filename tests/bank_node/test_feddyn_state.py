"""bank_node.feddyn: a bank's own FedDyn state, kept privately, never counted twice."""

from __future__ import annotations

import dataclasses
import logging
import stat
from pathlib import Path

import numpy as np
import pytest

from bank_node.feddyn import STATE_FILE, OwnDrift
from protocol import RoundInfo
from tests.protocol.messages import policy_dict, round_dict

ALPHA = 0.1


def _round(number: int, version: int = 1) -> RoundInfo:
    rnd = RoundInfo.from_dict(
        round_dict(number=number, policy=policy_dict(server_optimizer="feddyn", fedprox_mu=ALPHA))
    )
    return dataclasses.replace(rnd, policy=dataclasses.replace(rnd.policy, version=version))


def test_the_state_is_minus_alpha_times_the_banks_own_steps_summed(tmp_path: Path) -> None:
    drift = OwnDrift(tmp_path)
    base = np.array([1.0, 2.0, 3.0])
    h0 = drift.before_round(_round(4), 3)
    assert h0.tolist() == [0.0, 0.0, 0.0]
    h1 = drift.after_round(_round(4), h0, base + np.array([0.5, 0.0, -1.0]), base)
    np.testing.assert_allclose(h1, [-0.05, 0.0, 0.1])
    assert np.array_equal(drift.before_round(_round(5), 3), h1)
    h2 = drift.after_round(_round(5), h1, base + np.array([0.5, 0.0, 0.0]), base)
    np.testing.assert_allclose(h2, [-0.1, 0.0, 0.1])
    assert stat.S_IMODE((tmp_path / STATE_FILE).stat().st_mode) == 0o600


def test_training_the_same_round_again_starts_from_the_state_before_it(tmp_path: Path) -> None:
    drift, base = OwnDrift(tmp_path), np.zeros(2)
    h1 = drift.after_round(_round(4), np.zeros(2), np.array([1.0, 1.0]), base)
    h2 = drift.after_round(_round(5), h1, np.array([1.0, 1.0]), base)
    # A crash after round 5's training, before its upload: the retrain sees h1, not h2.
    assert np.array_equal(drift.before_round(_round(5), 2), h1)
    again = drift.after_round(_round(5), h1, np.array([1.0, 1.0]), base)
    assert np.array_equal(again, h2)  # counted once
    assert np.array_equal(drift.before_round(_round(6), 2), h2)


@pytest.mark.parametrize(("version", "length"), [(2, 2), (1, 3)])
def test_another_policy_version_or_model_length_starts_from_zero(
    tmp_path: Path, version: int, length: int, caplog: pytest.LogCaptureFixture
) -> None:
    drift = OwnDrift(tmp_path)
    drift.after_round(_round(4), np.zeros(2), np.array([1.0, 1.0]), np.zeros(2))
    with caplog.at_level(logging.INFO, logger="bank_node"):
        h = drift.before_round(_round(5, version=version), length)
    assert h.tolist() == [0.0] * length
    assert "does not carry over" in caplog.text


def test_an_unreadable_state_file_starts_from_zero_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / STATE_FILE).write_bytes(b"not an npz")
    with caplog.at_level(logging.WARNING, logger="bank_node"):
        h = OwnDrift(tmp_path).before_round(_round(4), 3)
    assert h.tolist() == [0.0, 0.0, 0.0]
    assert "unreadable" in caplog.text


def test_a_step_no_average_took_is_not_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The bank trained round 5 and saved its step, but round 5's average does not hold it
    (it dropped out before its upload was summed, or round 5 was aborted): round 6 trains
    from h_k as before round 5, as Algorithm 1 updates only the clients a round sums."""
    drift, base = OwnDrift(tmp_path), np.zeros(2)
    h1 = drift.after_round(_round(4), np.zeros(2), np.array([1.0, 1.0]), base)
    h2 = drift.after_round(_round(5), h1, np.array([1.0, -1.0]), base)
    asked: list[int] = []

    def counted(number: int, answer: bool) -> bool:
        asked.append(number)
        return answer

    with caplog.at_level(logging.INFO, logger="bank_node"):
        dropped = drift.before_round(_round(6), 2, lambda n: counted(n, False))
    assert np.array_equal(dropped, h1) and asked == [5]
    assert "its FedDyn step is not counted" in caplog.text
    assert np.array_equal(drift.before_round(_round(6), 2, lambda n: counted(n, True)), h2)
    # Training round 5 again asks nothing: its own first attempt never counts.
    assert np.array_equal(drift.before_round(_round(5), 2, lambda n: counted(n, True)), h1)
    assert asked == [5, 5]

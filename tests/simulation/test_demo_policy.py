"""The demo's policy turns bounded influence on, with the measured values, and off on request."""

from __future__ import annotations

import argparse

from simulation.demo_policy import add_policy_arguments, policy_fields


def _fields(*argv: str) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    add_policy_arguments(parser)
    return policy_fields(parser.parse_args(list(argv)), {"poly_modulus_degree": 4096})


def test_the_demo_caps_each_bank_at_half_the_rows_and_clips_steps_at_six():
    fields = _fields()
    assert (fields["max_bank_share"], fields["update_clip_norm"]) == (0.5, 6.0)
    assert fields["active"] is False and fields["max_rounds"] == 3


def test_the_demo_runs_without_the_bounds_when_asked():
    fields = _fields("--max-bank-share", "off", "--update-clip-norm", "off")
    assert fields["max_bank_share"] is None and fields["update_clip_norm"] is None
    assert _fields("--update-clip-norm", "2.5")["update_clip_norm"] == 2.5


def test_the_demo_gates_every_candidate_at_a_tolerance_of_two_hundredths_unless_turned_off():
    assert _fields()["gate_tolerance"] == 0.02
    assert _fields("--gate-tolerance", "off")["gate_tolerance"] is None

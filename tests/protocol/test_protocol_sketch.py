"""The counterparty sketch policy field: refused out of range, outside the digest when off."""

from __future__ import annotations

import pytest

from protocol import PolicySnapshot, ProtocolError, RoundInfo, SketchSpec
from tests.protocol.messages import policy_dict, round_dict, sketch_dict
from tests.protocol.test_protocol_policy import CANONICAL


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"as_of": []}, "as_of", "1 to 16 dates"),
        ({"as_of": ["2022-09-11", "2022-09-08"]}, "as_of", "strictly increasing"),
        ({"as_of": ["2022-09-08", "2022-09-08"]}, "as_of", "strictly increasing"),
        ({"as_of": ["yesterday"]}, "as_of", "ISO dates"),
        ({"window_days": 0}, "window_days", "[1, 366]"),
        ({"label_delay_days": -1}, "label_delay_days", "[0, 366]"),
        ({"depth": 9}, "depth", "[1, 8]"),
        ({"width": 100}, "width", "power of two"),
        ({"width": 2**20}, "width", "fewer dates"),
        ({"epsilon": 2.0}, "epsilon", "(0, 1]"),
        ({"delta": 0.01}, "delta", "(0, 0.001]"),
        ({"depth": "2"}, "depth", "expected an integer"),
    ],
)
def test_a_snapshot_with_a_sketch_no_node_can_build_is_refused_naming_the_field(
    fields, field, words
):
    with pytest.raises(ProtocolError) as caught:
        PolicySnapshot.from_dict(policy_dict(counterparty_sketch=sketch_dict(**fields)))
    assert caught.value.field == f"counterparty_sketch.{field}"
    assert words in caught.value.problem


def test_a_snapshot_without_the_sketch_field_reads_as_sketch_off():
    data = policy_dict()
    del data["counterparty_sketch"]
    assert PolicySnapshot.from_dict(data).counterparty_sketch is None


def test_a_policy_without_a_sketch_keeps_the_canonical_json_it_had_before_sketches():
    snapshot = PolicySnapshot.from_dict(policy_dict())
    assert snapshot.canonical_json() == CANONICAL.encode("ascii")
    assert "counterparty_sketch" not in CANONICAL


def test_a_sketch_puts_its_whole_spec_in_the_canonical_json():
    snapshot = PolicySnapshot.from_dict(policy_dict(counterparty_sketch=sketch_dict()))
    spec = (
        '"counterparty_sketch":{"as_of":["2022-09-08","2022-09-11"],"delta":1e-06,"depth":2,'
        '"epsilon":1.0,"label_delay_days":0,"width":64,"window_days":30},'
    )
    expected = CANONICAL.replace('"deadline_seconds"', spec + '"deadline_seconds"')
    assert snapshot.canonical_json() == expected.encode("ascii")
    assert snapshot.digest() != PolicySnapshot.from_dict(policy_dict()).digest()


def test_a_sketch_spec_survives_a_round_trip_through_its_dict():
    snapshot = PolicySnapshot.from_dict(policy_dict(counterparty_sketch=sketch_dict()))
    assert snapshot.counterparty_sketch == SketchSpec.from_dict(sketch_dict())
    assert snapshot.to_dict()["counterparty_sketch"] == sketch_dict()
    assert PolicySnapshot.from_dict(snapshot.to_dict()) == snapshot


def test_a_spec_counts_one_sketch_per_date_of_four_channels():
    assert SketchSpec.from_dict(sketch_dict()).values == 2 * 4 * 2 * 64


def test_a_sketch_round_is_a_round_kind_of_its_own():
    rnd = RoundInfo.from_dict(round_dict(kind="sketch", stats_round=None, base_round=None))
    assert rnd.is_sketch and not rnd.is_training and not rnd.is_evaluation


@pytest.mark.parametrize("split", [0, -1, 1001])
def test_a_noise_split_out_of_range_is_refused_naming_the_field(split):
    with pytest.raises(ProtocolError) as caught:
        SketchSpec.from_dict(sketch_dict(noise_split=split))
    assert caught.value.field == "noise_split"
    assert "[1, 1000]" in caught.value.problem


def test_a_noise_split_no_single_member_could_be_safe_under_is_refused():
    """An operator (or a careless policy) asking each bank for less noise than a round of
    min_banks banks can make up against one curious member: refused at every decoder."""
    too_thin = policy_dict(min_banks=4, counterparty_sketch=sketch_dict(noise_split=4))
    with pytest.raises(ProtocolError) as caught:
        PolicySnapshot.from_dict(too_thin)
    assert caught.value.field == "counterparty_sketch.noise_split"
    assert "min_banks - 1 = 3" in caught.value.problem
    fits = PolicySnapshot.from_dict({**too_thin, "min_banks": 5})
    assert fits.counterparty_sketch is not None and fits.counterparty_sketch.noise_split == 4


def test_a_noise_split_is_signed_with_the_policy_and_its_default_changes_no_digest():
    def snapshot(**sketch: object) -> PolicySnapshot:
        return PolicySnapshot.from_dict(
            policy_dict(min_banks=5, counterparty_sketch=sketch_dict(**sketch))
        )

    plain, explicit, split = snapshot(), snapshot(noise_split=1), snapshot(noise_split=4)
    assert explicit.canonical_json() == plain.canonical_json()  # as before the field existed
    assert "noise_split" not in plain.to_dict()["counterparty_sketch"]
    assert b'"noise_split":4' in split.canonical_json()
    assert split.digest() != plain.digest()  # approving one policy does not approve the other
    assert PolicySnapshot.from_dict(split.to_dict()) == split

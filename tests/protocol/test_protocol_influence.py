"""The wire refuses bounded-influence values no node could apply, naming the field."""

from __future__ import annotations

import pytest

from protocol import PolicySnapshot, ProtocolError
from tests.protocol.messages import policy_dict


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"max_bank_share": 0.5, "normalize_features": False}, "max_bank_share", "statistics"),
        ({"max_bank_share": 1.5}, "max_bank_share", "(0, 1]"),
        ({"update_clip_norm": 0.0}, "update_clip_norm", "positive"),
    ],
)
def test_a_snapshot_with_a_bound_no_node_can_apply_is_refused(fields, field, words):
    with pytest.raises(ProtocolError) as caught:
        PolicySnapshot.from_dict(policy_dict(**fields))
    assert caught.value.field == field and words in caught.value.problem


def test_a_share_cap_with_the_statistics_round_and_a_clip_norm_are_accepted():
    snapshot = PolicySnapshot.from_dict(policy_dict(max_bank_share=0.5, update_clip_norm=6.0))
    assert (snapshot.max_bank_share, snapshot.update_clip_norm) == (0.5, 6.0)

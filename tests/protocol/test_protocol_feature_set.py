"""The policy's feature set: outside the digest at its default, inside it otherwise."""

from __future__ import annotations

import hashlib

import pytest

from models.feature_sets import DEFAULT_FEATURE_SET as MODELS_DEFAULT
from models.feature_sets import FEATURE_SETS
from protocol import DEFAULT_FEATURE_SET, PolicySnapshot, ProtocolError
from tests.protocol.messages import policy_dict
from tests.protocol.test_protocol_policy import CANONICAL


def test_an_aml_v1_policy_keeps_the_canonical_json_it_had_before_feature_sets():
    snapshot = PolicySnapshot.from_dict(policy_dict())
    assert snapshot.feature_set == "aml-v1"
    assert snapshot.canonical_json() == CANONICAL.encode("ascii")
    assert "feature_set" not in CANONICAL


def test_a_snapshot_stored_before_the_field_existed_reads_as_aml_v1():
    data = policy_dict()
    del data["feature_set"]
    snapshot = PolicySnapshot.from_dict(data)
    assert snapshot.feature_set == "aml-v1"
    assert snapshot.digest() == PolicySnapshot.from_dict(policy_dict()).digest()


def test_another_feature_set_is_in_the_canonical_json_and_the_digest():
    snapshot = PolicySnapshot.from_dict(policy_dict(feature_set="card-v1", n_features=31))
    expected = CANONICAL.replace('"fedprox_mu":0.0,', '"feature_set":"card-v1","fedprox_mu":0.0,')
    expected = expected.replace('"n_features":12,', '"n_features":31,')
    assert snapshot.canonical_json() == expected.encode("ascii")
    assert snapshot.digest() == hashlib.sha256(expected.encode("ascii")).hexdigest()


@pytest.mark.parametrize("bad", ["", "AML v1", "aml-v1; drop", "x" * 40])
def test_a_feature_set_that_is_not_a_name_is_refused_naming_the_field(bad):
    with pytest.raises(ProtocolError) as caught:
        PolicySnapshot.from_dict(policy_dict(feature_set=bad))
    assert caught.value.field == "feature_set"


def test_the_wire_default_is_the_registry_default_and_every_set_name_is_valid_on_the_wire():
    assert DEFAULT_FEATURE_SET == MODELS_DEFAULT
    for name, spec in FEATURE_SETS.items():
        data = policy_dict(feature_set=name, n_features=spec.n_features)
        assert PolicySnapshot.from_dict(data).feature_set == name

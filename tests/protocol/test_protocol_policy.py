"""The policy snapshot: one field list, strict parsing, a stable digest, one DP rule."""

from __future__ import annotations

import hashlib
import json

import pytest

from he.params import CkksParams
from protocol import (
    DEFAULT_CKKS_PARAMS,
    POLICY_FIELDS,
    PolicySnapshot,
    ProtocolError,
    default_ckks_params,
    default_model_spec,
)
from tests.protocol.messages import policy_dict


def test_a_snapshot_survives_a_round_trip_through_its_dict_and_json():
    data = policy_dict(dp_target_epsilon=4.0)
    snapshot = PolicySnapshot.from_dict(json.loads(json.dumps(data)))
    assert snapshot.to_dict() == data
    assert PolicySnapshot.from_dict(snapshot.to_dict()) == snapshot


def test_the_field_list_is_the_snapshot_s_own_in_wire_order():
    assert list(policy_dict()) == list(POLICY_FIELDS)
    assert list(PolicySnapshot.from_dict(policy_dict()).to_dict()) == list(POLICY_FIELDS)


@pytest.mark.parametrize("field", ["dp_delta", "model_spec", "name", "dp_target_epsilon"])
def test_a_missing_field_is_a_protocol_error_naming_it(field):
    data = policy_dict()
    del data[field]
    with pytest.raises(ProtocolError, match=f"^{field}: is missing") as caught:
        PolicySnapshot.from_dict(data)
    assert caught.value.field == field


def test_an_unknown_field_is_a_protocol_error_naming_it():
    with pytest.raises(ProtocolError, match="not a field") as caught:
        PolicySnapshot.from_dict(policy_dict(dp_budget=3.0))
    assert caught.value.field == "dp_budget"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", "1"),
        ("version", 1.5),
        ("version", True),
        ("learning_rate", "fast"),
        ("learning_rate", float("nan")),
        ("normalize_features", 1),
        ("model_spec", [32, 16]),
        ("name", None),
        ("dp_delta", None),
        ("ckks_params", {"poly_modulus_degree": 4096}),
        ("ckks_params", {**DEFAULT_CKKS_PARAMS, "coeff_mod_bit_sizes": [60, 60]}),
    ],
)
def test_a_wrongly_typed_field_is_a_protocol_error_naming_it(field, value):
    with pytest.raises(ProtocolError) as caught:
        PolicySnapshot.from_dict(policy_dict(**{field: value}))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


@pytest.mark.parametrize("min_banks", [0, 1, 2])
def test_a_snapshot_with_min_banks_below_three_is_a_protocol_error_naming_the_field(min_banks):
    with pytest.raises(ProtocolError, match="at least 3") as caught:
        PolicySnapshot.from_dict(policy_dict(min_banks=min_banks))
    assert caught.value.field == "min_banks"


def test_a_snapshot_that_is_not_an_object_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="expected an object"):
        PolicySnapshot.from_dict(["not", "a", "policy"])


def test_an_integer_for_a_float_field_is_read_as_that_float():
    snapshot = PolicySnapshot.from_dict(policy_dict(learning_rate=1, fedprox_mu=0))
    assert snapshot.learning_rate == 1.0 and isinstance(snapshot.learning_rate, float)
    assert snapshot.digest() == PolicySnapshot.from_dict(policy_dict(learning_rate=1.0)).digest()


def test_the_digest_does_not_depend_on_key_order():
    data = policy_dict(model_spec={"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"})
    shuffled = dict(reversed(list(data.items())))
    shuffled["model_spec"] = dict(reversed(list(data["model_spec"].items())))
    shuffled["ckks_params"] = dict(reversed(list(data["ckks_params"].items())))
    a, b = PolicySnapshot.from_dict(data), PolicySnapshot.from_dict(shuffled)
    assert a.canonical_json() == b.canonical_json()
    assert a.digest() == b.digest()


# Written out by hand from the rules in PolicySnapshot.canonical_json: a change to the
# encoding would silently invalidate every approval banks have signed.
CANONICAL = (
    '{"aggregate_checkers":0,"batch_size":256,"ckks_params":{"coeff_mod_bit_sizes":[60,40],"global_scale_bits":28,'
    '"poly_modulus_degree":4096},"deadline_seconds":1800,"dp_delta":1e-05,'
    '"dp_max_grad_norm":1.0,"dp_noise_multiplier":null,"dp_target_epsilon":null,'
    '"fedprox_mu":0.0,"gate_alert_rate":0.01,"gate_tolerance":null,"learning_rate":0.001,'
    '"local_epochs":2,"max_bank_share":null,"max_rounds":10,"min_banks":3,'
    '"model_spec":{"hidden":[32,16],"kind":"mlp","loss":"bce","seed":7},"n_features":12,'
    '"name":"baseline","normalize_features":true,"secure_aggregation":"v2",'
    '"update_clip_norm":null,"vector_length":970,"version":1}'
)


def test_the_digest_is_sha256_of_the_documented_canonical_json():
    snapshot = PolicySnapshot.from_dict(policy_dict())
    assert snapshot.canonical_json() == CANONICAL.encode("ascii")
    assert snapshot.digest() == hashlib.sha256(CANONICAL.encode("ascii")).hexdigest()


def test_a_non_ascii_name_is_escaped_in_the_canonical_json():
    snapshot = PolicySnapshot.from_dict(policy_dict(name="bänk"))
    assert b'"name":"b\\u00e4nk"' in snapshot.canonical_json()


@pytest.mark.parametrize(
    "field", ["max_rounds", "dp_delta", "model_spec", "name", "secure_aggregation"]
)
def test_the_digest_changes_when_any_field_changes(field):
    base = policy_dict()
    changed = {
        "max_rounds": 11,
        "dp_delta": 1e-6,
        "model_spec": {**base["model_spec"], "seed": 8},
        "name": "other",
        "secure_aggregation": "v1",
    }[field]
    assert (
        PolicySnapshot.from_dict(base).digest()
        != PolicySnapshot.from_dict(policy_dict(**{field: changed})).digest()
    )


@pytest.mark.parametrize(
    ("target_epsilon", "noise_multiplier", "enabled"),
    [
        (None, None, False),
        (3.0, None, True),
        (None, 1.1, True),
        (3.0, 1.1, True),
        (None, 0.0, True),
    ],
)
def test_dp_is_on_when_a_budget_or_a_noise_multiplier_is_set(
    target_epsilon, noise_multiplier, enabled
):
    snapshot = PolicySnapshot.from_dict(
        policy_dict(dp_target_epsilon=target_epsilon, dp_noise_multiplier=noise_multiplier)
    )
    assert snapshot.dp_enabled is enabled


def test_the_default_ckks_parameters_are_the_crypto_layer_s_and_valid():
    assert CkksParams.from_dict(DEFAULT_CKKS_PARAMS) == CkksParams()
    assert PolicySnapshot.from_dict(policy_dict()).ckks == CkksParams()


def test_the_defaults_are_fresh_copies_callers_may_change():
    spec, ckks = default_model_spec(), default_ckks_params()
    spec["hidden"].append(99)
    ckks["coeff_mod_bit_sizes"].append(40)
    assert default_model_spec()["hidden"] == [32, 16]
    assert default_ckks_params()["coeff_mod_bit_sizes"] == [60, 40]


def test_a_snapshot_is_frozen():
    snapshot = PolicySnapshot.from_dict(policy_dict())
    with pytest.raises(AttributeError):
        snapshot.max_rounds = 99  # type: ignore[misc]

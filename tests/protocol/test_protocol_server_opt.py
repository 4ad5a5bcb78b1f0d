"""The server optimiser's policy fields: refused out of range, and outside the digest at FedAvg."""

from __future__ import annotations

import hashlib

import pytest

from models.server_opt import SERVER_OPTIMIZERS as IMPLEMENTED
from protocol import SERVER_OPT_DEFAULTS, SERVER_OPTIMIZERS, PolicySnapshot, ProtocolError
from tests.protocol.messages import policy_dict
from tests.protocol.test_protocol_policy import CANONICAL


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"server_optimizer": "adam"}, "server_optimizer", "fedadam, fedyogi, feddyn"),
        ({"server_lr": 0.0}, "server_lr", "(0, 10]"),
        ({"server_lr": 11.0}, "server_lr", "(0, 10]"),
        ({"server_momentum": 1.0}, "server_momentum", "[0, 1)"),
        ({"server_beta1": -0.1}, "server_beta1", "[0, 1)"),
        ({"server_beta2": 1.0}, "server_beta2", "[0, 1)"),
        ({"server_tau": 0.0}, "server_tau", "(0, 1]"),
        ({"server_optimizer": "feddyn"}, "fedprox_mu", "feddyn takes its alpha from fedprox_mu"),
        (
            {"server_optimizer": "feddyn", "fedprox_mu": 0.01, "dp_target_epsilon": 8.0},
            "server_optimizer",
            "feddyn is not available with DP-SGD",
        ),
    ],
)
def test_a_snapshot_with_a_server_optimiser_no_node_can_run_is_refused(fields, field, words):
    with pytest.raises(ProtocolError) as caught:
        PolicySnapshot.from_dict(policy_dict(**fields))
    assert caught.value.field == field and words in caught.value.problem


def test_a_snapshot_without_the_server_optimiser_fields_is_refused_naming_one():
    data = policy_dict()
    del data["server_tau"]
    with pytest.raises(ProtocolError) as caught:
        PolicySnapshot.from_dict(data)
    assert caught.value.field == "server_tau"


def test_the_wire_names_exactly_the_optimisers_the_maths_implements():
    assert SERVER_OPTIMIZERS == IMPLEMENTED


def test_a_fedavg_policy_keeps_the_canonical_json_it_had_before_server_optimisers():
    snapshot = PolicySnapshot.from_dict(policy_dict())
    assert snapshot.canonical_json() == CANONICAL.encode("ascii")
    assert all(name not in CANONICAL for name in SERVER_OPT_DEFAULTS)


FEDADAM_TAIL = (
    '"server_beta1":0.9,"server_beta2":0.99,"server_lr":0.03,"server_momentum":0.9,'
    '"server_optimizer":"fedadam","server_tau":0.001,"update_clip_norm":null,'
    '"vector_length":970,"version":1}'
)


def test_any_other_server_optimiser_puts_all_six_fields_in_the_canonical_json():
    snapshot = PolicySnapshot.from_dict(policy_dict(server_optimizer="fedadam", server_lr=0.03))
    expected = CANONICAL.replace(
        '"update_clip_norm":null,"vector_length":970,"version":1}', FEDADAM_TAIL
    )
    assert snapshot.canonical_json() == expected.encode("ascii")
    assert snapshot.digest() == hashlib.sha256(expected.encode("ascii")).hexdigest()


@pytest.mark.parametrize(
    "change",
    [
        {"server_optimizer": "fedavgm"},
        {"server_lr": 0.5},
        {"server_momentum": 0.5},
        {"server_beta1": 0.5},
        {"server_beta2": 0.5},
        {"server_tau": 0.5},
    ],
)
def test_the_digest_changes_when_any_server_optimiser_field_changes(change):
    plain = PolicySnapshot.from_dict(policy_dict()).digest()
    assert PolicySnapshot.from_dict(policy_dict(**change)).digest() != plain

"""A node refuses rounds and aggregates its verified roster or its own guardrails do not allow."""

from __future__ import annotations

import dataclasses

import pytest

from bank_node.checks import (
    Refused,
    check_aggregate_file,
    check_guardrails,
    check_manifest,
    check_roster_floors,
    check_round,
)
from bank_node.config import Guardrails
from governance import MemberStatus
from protocol import ManifestInput
from tests.bank_node.roster_fakes import (
    RAILS,
    governed,
    manifest,
    policy,
    signed_input,
    training_round,
)
from tests.governance.roster_helpers import EPOCH, new_bank

EPOCHS = {EPOCH}


@pytest.fixture(scope="module")
def world():
    return governed()


def _refusal(call, *args, **kwargs) -> Refused:
    with pytest.raises(Refused) as caught:
        call(*args, **kwargs)
    return caught.value


def test_a_round_under_the_approved_policy_and_epoch_passes(world):
    _, state, snapshot = world
    check_round(state, training_round(snapshot))


def test_a_policy_the_banks_did_not_approve_is_refused(world):
    _, state, snapshot = world
    # The operator switches DP off and keeps the name and version the banks approved.
    swapped = dataclasses.replace(snapshot, dp_target_epsilon=None)
    refusal = _refusal(check_round, state, training_round(swapped))
    assert refusal.reason == "policy_not_approved"
    assert "'baseline' v1" in refusal.message and "not approved" in refusal.message


def test_a_key_epoch_not_in_force_is_refused(world):
    _, state, snapshot = world
    refusal = _refusal(check_round, state, training_round(snapshot, key_epoch="cd" * 32))
    assert refusal.reason == "key_epoch_not_in_force"


@pytest.mark.parametrize(
    ("overrides", "reason", "words"),
    [
        ({"dp_target_epsilon": None}, "privacy_floor", "requires DP"),
        ({"dp_target_epsilon": 12.0}, "privacy_floor", "exceeds the roster's epsilon ceiling 8"),
    ],
    ids=["dp-off", "epsilon-over-ceiling"],
)
def test_a_policy_below_the_roster_s_floors_is_refused_even_if_approved(
    world, overrides, reason, words
):
    _, state, _ = world
    refusal = _refusal(check_roster_floors, state, policy(**overrides))
    assert (refusal.reason, words in refusal.message) == (reason, True)


def test_a_policy_below_the_roster_s_min_banks_floor_is_refused_even_if_approved(world):
    # No snapshot can say min_banks < 3 (protocol refuses it); the roster may ask for more.
    _, state, _ = world
    raised = dataclasses.replace(state, min_banks=4)
    refusal = _refusal(check_roster_floors, raised, policy(min_banks=3))
    assert refusal.reason == "min_banks_below_floor"
    assert "below the roster's floor 4" in refusal.message


@pytest.mark.parametrize(
    ("rails", "overrides", "message"),
    [
        (
            Guardrails(epsilon_ceiling=8.0),
            {"dp_target_epsilon": 12.0, "name": "fraud", "version": 3},
            "policy 'fraud' v3: dp_target_epsilon 12 exceeds this bank's guardrail "
            "epsilon_ceiling 8",
        ),
        (
            Guardrails(dp_required=True),
            {"dp_target_epsilon": None},
            "DP off violates this bank's guardrail dp_required true",
        ),
        (
            Guardrails(min_cohort=5),
            {"min_banks": 4},
            "min_banks 4 is below this bank's guardrail min_cohort 5",
        ),
        (
            Guardrails(max_model_parameters=100),
            {},
            "model parameters 969 exceeds this bank's guardrail max_model_parameters 100",
        ),
    ],
    ids=["epsilon-ceiling", "dp-required", "min-cohort", "model-size"],
)
def test_a_policy_outside_the_bank_s_guardrails_is_refused_naming_field_and_limit(
    rails, overrides, message
):
    rnd = training_round(policy(**overrides))
    refusal = _refusal(check_guardrails, rails, rnd, rounds_last_day=0, node_epochs=EPOCHS)
    assert refusal.reason == "guardrail"
    assert message in refusal.message


def test_more_rounds_a_day_than_the_guardrail_allows_are_refused():
    rails = Guardrails(max_rounds_per_day=2)
    rnd = training_round(policy())
    check_guardrails(rails, rnd, rounds_last_day=1, node_epochs=EPOCHS)
    refusal = _refusal(check_guardrails, rails, rnd, rounds_last_day=2, node_epochs=EPOCHS)
    assert "max_rounds_per_day 2" in refusal.message


def test_a_key_epoch_the_bank_does_not_accept_is_refused():
    rails = Guardrails(accepted_key_epochs=("ef" * 32,))
    refusal = _refusal(
        check_guardrails, rails, training_round(policy()), rounds_last_day=0, node_epochs=EPOCHS
    )
    assert "accepted_key_epochs" in refusal.message


def _unsigned(bank: str) -> ManifestInput:
    return ManifestInput(bank, "0" * 64, epsilon=1.0, budget_left=True)


def _published(snapshot, inputs):
    m = manifest(4, inputs)
    return training_round(snapshot, state="published", manifest=m.to_dict()), m


def test_an_aggregate_of_three_roster_members_signed_under_their_roster_keys_is_used(world):
    ceremony, state, snapshot = world
    rnd, m = _published(
        snapshot, [signed_input(ceremony, b, 4) for b in ("alpha", "beta", "gamma")]
    )
    check_manifest(state, rnd, m, RAILS)


def test_an_aggregate_naming_a_bank_outside_the_roster_is_refused(world):
    ceremony, state, snapshot = world
    sham = new_bank("sham")
    ceremony.banks["sham"] = sham
    try:
        inputs = [signed_input(ceremony, b, 4) for b in ("alpha", "beta", "sham")]
    finally:
        del ceremony.banks["sham"]
    rnd, m = _published(snapshot, inputs)
    refusal = _refusal(check_manifest, state, rnd, m, RAILS)
    assert refusal.reason == "cohort" and "'sham', which is not on the roster" in refusal.message


def test_an_aggregate_with_an_update_signed_under_a_swapped_key_is_refused(world):
    ceremony, state, snapshot = world
    thief = new_bank("beta")  # the operator rotated beta's key on the portal, not in the roster
    inputs = [signed_input(ceremony, "alpha", 4), signed_input(ceremony, "gamma", 4)]
    ceremony.banks["beta"], real = thief, ceremony.banks["beta"]
    try:
        inputs.append(signed_input(ceremony, "beta", 4))
    finally:
        ceremony.banks["beta"] = real
    rnd, m = _published(snapshot, inputs)
    refusal = _refusal(check_manifest, state, rnd, m, RAILS)
    assert refusal.reason == "input_signature" and "'beta'" in refusal.message


def test_an_aggregate_whose_epsilon_was_changed_after_signing_is_refused(world):
    ceremony, state, snapshot = world
    inputs = [signed_input(ceremony, b, 4) for b in ("alpha", "beta", "gamma")]
    inputs[0] = dataclasses.replace(inputs[0], epsilon=0.1)
    rnd, m = _published(snapshot, inputs)
    assert _refusal(check_manifest, state, rnd, m, RAILS).reason == "input_signature"


@pytest.mark.parametrize("epsilon", [5.0, None], ids=["over-budget", "unclaimed"])
def test_an_input_signed_with_an_epsilon_over_the_policy_s_budget_is_refused(world, epsilon):
    ceremony, state, snapshot = world  # the policy's budget is epsilon 4
    inputs = [signed_input(ceremony, b, 4) for b in ("alpha", "beta", "gamma")]
    inputs[1] = signed_input(ceremony, "beta", 4, epsilon=epsilon)
    rnd, m = _published(snapshot, inputs)
    refusal = _refusal(check_manifest, state, rnd, m, RAILS)
    assert refusal.reason == "input_privacy" and "'beta'" in refusal.message


def test_inputs_within_the_policy_s_budget_pass_the_privacy_check(world):
    ceremony, state, snapshot = world
    inputs = [signed_input(ceremony, b, 4, epsilon=4.0) for b in ("alpha", "beta", "gamma")]
    rnd, m = _published(snapshot, inputs)
    check_manifest(state, rnd, m, RAILS)


@pytest.mark.parametrize(
    "banks", [("alpha", "beta"), ("alpha", "beta", "beta")], ids=["two-banks", "one-twice"]
)
def test_an_aggregate_of_too_few_distinct_members_is_refused(world, banks):
    ceremony, state, snapshot = world
    rnd, m = _published(snapshot, [signed_input(ceremony, b, 4) for b in banks])
    assert _refusal(check_manifest, state, rnd, m, RAILS).reason == "cohort"


def test_an_aggregate_including_a_suspended_member_is_refused(world):
    ceremony, state, snapshot = world
    members = tuple(
        dataclasses.replace(m, status=MemberStatus.SUSPENDED) if m.bank_id == "gamma" else m
        for m in state.members
    )
    suspended = dataclasses.replace(state, members=members)
    rnd, m = _published(
        snapshot, [signed_input(ceremony, b, 4) for b in ("alpha", "beta", "gamma")]
    )
    refusal = _refusal(check_manifest, suspended, rnd, m, RAILS)
    assert "'gamma', which is suspended" in refusal.message


def test_the_bank_s_own_min_cohort_raises_the_floor_for_aggregates(world):
    ceremony, state, snapshot = world
    rnd, m = _published(
        snapshot, [signed_input(ceremony, b, 4) for b in ("alpha", "beta", "gamma")]
    )
    assert _refusal(check_manifest, state, rnd, m, Guardrails(min_cohort=4)).reason == "cohort"


def test_without_a_pinned_roster_the_cohort_floor_still_holds():
    # Two inputs and nobody to verify their keys: the count alone still refuses it.
    inputs = [_unsigned("alpha"), _unsigned("beta")]
    rnd, m = _published(policy(), inputs)
    assert _refusal(check_manifest, None, rnd, m, RAILS).reason == "cohort"


def test_downloaded_bytes_that_are_not_the_manifest_s_aggregate_are_refused(tmp_path, world):
    path = tmp_path / "agg.ckks"
    path.write_bytes(b"aggregate")
    check_aggregate_file(path, manifest(4, []))
    path.write_bytes(b"an aggregate the operator encrypted itself")
    refusal = _refusal(check_aggregate_file, path, manifest(4, []))
    assert refusal.reason == "aggregate_digest"

"""The policy diff in words and the structured fields' parsing, without a database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django import forms

from consortium.portal import policy_fields
from consortium.portal.policy_diff import Change, duration_words, policy_diff
from models import nets


def test_the_form_offers_exactly_the_model_keys_and_losses_models_accepts():
    assert policy_fields.SPEC_KEYS == nets.SPEC_KEYS
    assert policy_fields.LOSSES == nets.LOSSES
    assert [kind for kind, _ in policy_fields.MODEL_KINDS] == ["mlp"]


def test_a_change_reads_as_a_sentence():
    assert str(Change("min_banks", "Minimum banks", "10", "12")) == "Minimum banks 10 → 12"


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ({"min_banks": 10}, {"min_banks": 12}, ["Minimum banks 10 → 12"]),
        ({"dp_target_epsilon": None}, {"dp_target_epsilon": 8.0}, ["Privacy budget ε off → 8.0"]),
        (
            {"max_bank_share": 0.5},
            {"max_bank_share": None},
            ["Largest share of rows per bank 0.5 → no cap"],
        ),
        (
            {"normalize_features": True},
            {"normalize_features": False},
            ["Feature statistics round first yes → no"],
        ),
        (
            {"deadline": timedelta(minutes=30)},
            {"deadline": timedelta(hours=2, minutes=5)},
            ["Deadline 30 min → 2 h 5 min"],
        ),
        (
            {"model_spec": {"kind": "mlp", "hidden": [32, 16]}},
            {"model_spec": {"kind": "mlp", "hidden": [], "seed": 3}},
            ["Hidden layer widths 32, 16 → none", "Initial-weights seed default → 3"],
        ),
        (
            {"model_spec": {"pos_weight": 2}},
            {"model_spec": {"pos_weight": 2.0}},
            ["Positive-class weight 2 → 2.0"],  # not the same JSON, nor the same digest
        ),
        (
            {"ckks_params": {"poly_modulus_degree": 4096, "coeff_mod_bit_sizes": [60, 40]}},
            {"ckks_params": {"poly_modulus_degree": 8192, "coeff_mod_bit_sizes": [60, 40, 60]}},
            ["CKKS ring size 4096 → 8192", "CKKS primes (bits) 60, 40 → 60, 40, 60"],
        ),
        (
            {"min_banks": 3, "model_spec": {"kind": "mlp"}},
            {"min_banks": 3, "model_spec": {"kind": "mlp"}},
            [],
        ),
    ],
)
def test_the_diff_names_each_changed_setting_in_words(old, new, words):
    assert [str(c) for c in policy_diff(old, new)] == words


def test_the_diff_follows_the_pages_field_order():
    old = {"min_banks": 3, "local_epochs": 1, "server_lr": 1.0}
    new = {"min_banks": 4, "local_epochs": 2, "server_lr": 0.5}
    assert [c.field for c in policy_diff(old, new)] == ["local_epochs", "min_banks", "server_lr"]


@pytest.mark.parametrize(
    ("value", "words"),
    [(timedelta(seconds=20), "20 s"), (timedelta(hours=1), "1 h"), (timedelta(0), "0 s")],
)
def test_durations_read_in_hours_minutes_and_seconds(value, words):
    assert duration_words(value) == words


@pytest.mark.parametrize(
    ("text", "widths"),
    [("32, 16", [32, 16]), ("8", [8]), ("none", []), ("NONE", []), ("", None), ("4;4", [4, 4])],
)
def test_hidden_layer_widths_are_read_as_typed(text, widths):
    assert policy_fields.parse_hidden(text) == widths


@pytest.mark.parametrize("text", ["32 16", "a", "1.5", "0", "4097", ",", "1,2,3,4,5,6,7,8,9"])
def test_hidden_layer_widths_refuse_what_is_not_a_list_of_widths(text):
    with pytest.raises(forms.ValidationError):
        policy_fields.parse_hidden(text)


@pytest.mark.parametrize(
    ("text", "value"), [("10", 10), ("10.0", 10.0), ("2.5", 2.5), ("1e-05", 1e-05), ("", None)]
)
def test_a_number_keeps_the_type_it_was_written_in(text, value):
    field = policy_fields.JsonNumberField(minimum=0.0, inclusive=True, label="x")
    cleaned = field.clean(text)
    assert cleaned == value and type(cleaned) is type(value)


def test_a_spec_leaves_out_the_keys_left_blank():
    cleaned = {"model_kind": "mlp", "model_hidden": [4], "model_seed": None, "model_loss": ""}
    assert policy_fields.model_spec_from(cleaned) == {"kind": "mlp", "hidden": [4]}


def test_a_spec_reads_in_words():
    spec = {"kind": "mlp", "hidden": [32, 16], "seed": 7, "loss": "bce", "pos_weight": 10}
    assert policy_fields.model_words(spec) == (
        "mlp; hidden layers 32, 16; seed 7; loss bce; positive weight 10"
    )

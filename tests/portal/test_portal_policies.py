"""Policy pages: structured fields with every bad value named, the same canonical JSON for the
same values, the confirmation with its changes and effective round, any two versions
compared, the rounds a version ran and what its maximum counts."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any, cast

import pytest
from django import forms
from django.test import Client

from consortium.portal.forms import PolicyForm
from consortium.rounds.models import Round, RoundKind, RoundPolicy, RoundState
from consortium.rounds.services import policy_create
from protocol import DEFAULT_CKKS_PARAMS, PolicySnapshot
from tests.conftest import PARAMS


def text(response: Any) -> str:
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", response.content.decode(), flags=re.S)
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", body).split()))


@pytest.fixture
def op(operator: Any, client_for: Any) -> Client:
    return client_for(operator)


def form_post(policy: RoundPolicy, *, confirmed: bool = True, **changes: Any) -> dict[str, Any]:
    """The form as the page pre-fills it from ``policy``, with ``changes``."""
    form = PolicyForm(base=policy)
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if isinstance(field, forms.BooleanField):
            if value:
                data[name] = "on"
        else:
            data[name] = "" if value is None else value
    if confirmed:
        data["confirmed"] = "yes"
    data.update(changes)
    return data


def choices_of(form: PolicyForm) -> Any:
    return cast(forms.ChoiceField, form.fields["ckks_params"]).choices


def canonical(policy: RoundPolicy, version: int) -> bytes:
    return PolicySnapshot.from_dict({**policy.snapshot(), "version": version}).canonical_json()


# --- structured fields -----------------------------------------------------------------------

SPECS = [
    {"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"},
    {"kind": "mlp", "hidden": [32, 16], "seed": 7, "loss": "focal", "focal_gamma": 2.0},
    {"kind": "mlp", "hidden": [], "pos_weight": 10, "lr": 0.001, "weight_decay": 1e-05},
    {"kind": "mlp", "hidden": [4, 4], "pos_weight": 2.5, "fedprox_mu": 0},
    {"kind": "mlp"},
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: ",".join(s))
def test_a_version_saved_unchanged_from_the_form_has_the_same_canonical_json(
    op, epoch, policy, spec
):
    base = policy_create(
        name="spec", actor="test", min_banks=3, model_spec=spec, ckks_params=PARAMS.to_dict()
    )
    response = op.post(f"/policies/{base.pk}/new-version", form_post(base))
    assert response.status_code == 302, text(response)
    new = RoundPolicy.objects.get(name="spec", version=2)
    assert new.model_spec == spec
    # Each value keeps its type (10 stays an int, 10.0 a float); keys compared as a map, since
    # PostgreSQL's jsonb keeps them in its own order.
    assert {k: type(v) for k, v in new.model_spec.items()} == {k: type(v) for k, v in spec.items()}
    assert canonical(new, 1) == canonical(base, 1)


def test_the_form_shows_the_model_spec_field_by_field_and_no_json_box(op, epoch, policy):
    page = op.get(f"/policies/{policy.pk}/new-version").content.decode()
    assert 'name="model_hidden" value="8"' in page
    assert 'name="model_seed" value="1"' in page
    assert '<option value="bce" selected>' in page
    assert "<textarea" not in page
    # the CKKS parameters are a choice among the key epochs', labelled in words
    assert re.search(r"Key epoch 1 \(active\): ring 4096 \(2048 values per ciphertext\)", page)


def test_the_ckks_choices_are_the_key_epochs_and_the_base_only_when_no_epoch_has_its(epoch, policy):
    other = {
        **DEFAULT_CKKS_PARAMS,
        "poly_modulus_degree": 8192,
        "coeff_mod_bit_sizes": [60, 40, 60],
    }
    odd = policy_create(name="odd", actor="test", min_banks=3, ckks_params=other)
    labels = [label for _, label in choices_of(PolicyForm(base=odd))]
    assert len(labels) == 2
    assert labels[0].startswith("Key epoch 1 (active)")
    assert labels[1].startswith("as in odd v1 (no key epoch has them): ring 8192")
    labels = [label for _, label in choices_of(PolicyForm(base=policy))]
    assert len(labels) == 1  # the base's are the epoch's


def test_without_a_key_epoch_the_defaults_are_the_one_choice(db):
    (choice,) = choices_of(PolicyForm())
    assert choice[1].startswith("defaults (no key epoch registered yet): ring 4096")


def test_a_version_takes_another_key_epochs_parameters(op, epoch, policy):
    odd = {**DEFAULT_CKKS_PARAMS, "poly_modulus_degree": 8192, "coeff_mod_bit_sizes": [60, 40, 60]}
    base = policy_create(name="odd", actor="test", min_banks=3, ckks_params=odd)
    chosen = choices_of(PolicyForm(base=base))[0][0]  # epoch 1's
    response = op.post(f"/policies/{base.pk}/new-version", form_post(base, ckks_params=chosen))
    assert response.status_code == 302
    assert RoundPolicy.objects.get(name="odd", version=2).ckks_params == PARAMS.to_dict()


BAD_VALUES = [
    ("model_kind", "transformer", "Model kind: transformer is not one of the choices (mlp)"),
    ("model_kind", "", "Model kind: Choose one (mlp)"),
    ("model_hidden", "32, sixteen", "Hidden layer widths: Whole numbers separated by commas"),
    ("model_hidden", "32,,16", "Hidden layer widths: Whole numbers separated by commas"),
    ("model_hidden", "-4", "Hidden layer widths: Whole numbers separated by commas"),
    ("model_hidden", "0", "Hidden layer widths: Each layer has 1 to 4096 units"),
    ("model_hidden", "5000", "Hidden layer widths: Each layer has 1 to 4096 units"),
    ("model_hidden", "1,2,3,4,5,6,7,8,9", "Hidden layer widths: At most 8 layers"),
    ("model_hidden", "4096, 4096, 4096", "Hidden layer widths: model_spec has about"),
    ("model_seed", "-1", "Initial-weights seed: A whole number from 0 to 2^63 - 1"),
    ("model_seed", "seven", "Initial-weights seed: A whole number from 0 to 2^63 - 1"),
    ("model_seed", str(2**63), "Initial-weights seed: A whole number from 0 to 2^63 - 1"),
    ("model_loss", "mse", "Loss: mse is not one of the choices (bce or focal)"),
    ("model_pos_weight", "0", "Positive-class weight: Must be above 0"),
    ("model_pos_weight", "heavy", "Positive-class weight: Enter a number, e.g. 2.5"),
    ("model_pos_weight", "nan", "Positive-class weight: Enter a finite number"),
    ("model_pos_weight", "inf", "Positive-class weight: Enter a finite number"),
    ("model_lr", "-0.1", "Model learning rate: Must be above 0"),
    ("model_focal_gamma", "-0.5", "Focal gamma: Must be at least 0"),
    ("model_fedprox_mu", "-1", "Model's FedProx μ: Must be at least 0"),
    ("model_weight_decay", "1e", "Weight decay: Enter a number, e.g. 2.5"),
    ("ckks_params", '{"poly_modulus_degree": 8192}', "CKKS parameters: Choose the parameters of"),
    ("ckks_params", "", "CKKS parameters: Choose the parameters of a registered key epoch"),
    ("local_epochs", "0", "Local epochs: Ensure this value is greater than or equal to 1"),
    ("batch_size", "", "Batch size: This field is required"),
    ("learning_rate", "fast", "Learning rate: Enter a number"),
    ("fedprox_mu", "-1", "FedProx μ: Ensure this value is greater than or equal to 0.0"),
    ("min_banks", "2", "Minimum banks per aggregate: min_banks must be at least 3"),
    ("deadline_minutes", "0", "Deadline (minutes): Ensure this value is greater than or equal"),
    ("max_rounds", "0", "Maximum rounds: Ensure this value is greater than or equal to 1"),
    ("dp_target_epsilon", "0", "Privacy budget ε (DP-SGD): Ensure this value is greater than"),
    ("dp_delta", "0.5", "DP δ: Ensure this value is less than or equal to 0.001"),
    ("dp_max_grad_norm", "0", "Gradient clipping norm: Ensure this value is greater than"),
    ("dp_noise_multiplier", "-1", "Noise multiplier: Ensure this value is greater than"),
    ("secure_aggregation", "v3", "Secure aggregation: Select a valid choice"),
    ("aggregate_checkers", "-1", "Aggregate checkers (v2): Ensure this value is greater than"),
    ("max_bank_share", "1.5", "Largest share of rows per bank: Ensure this value is less than"),
    ("update_clip_norm", "0", "Update clip norm (L2): Ensure this value is greater than"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES, ids=lambda v: str(v)[:24])
@pytest.mark.parametrize("confirmed", [False, True], ids=["to-confirm", "to-save"])
def test_every_bad_value_is_a_400_naming_its_field(
    op, epoch, policy, field, value, message, confirmed
):
    data = form_post(policy, confirmed=confirmed, **{field: value})
    response = op.post(f"/policies/{policy.pk}/new-version", data)
    assert response.status_code == 400
    assert message in text(response)
    assert RoundPolicy.objects.filter(name=policy.name).count() == 1


def test_a_new_policy_with_a_bad_name_is_refused_naming_the_field(op, epoch, policy):
    data = {**form_post(policy, confirmed=False), "name": "no spaces allowed"}
    response = op.post("/policies/new", data)
    assert response.status_code == 400
    assert "Name: Enter a valid “slug”" in text(response)


# --- confirmation ----------------------------------------------------------------------------


def test_a_new_version_is_confirmed_with_its_changes_and_the_round_it_applies_from(
    op, open_round, policy
):
    data = form_post(policy, confirmed=False, min_banks="4", model_hidden="16, 8")
    response = op.post(f"/policies/{policy.pk}/new-version", data)
    assert response.status_code == 200
    page = text(response)
    assert "Save default v2?" in page
    assert "Minimum banks 3 → 4" in page
    assert "Hidden layer widths 8 → 16, 8" in page
    assert "Local epochs" not in page.split("Changes (2)")[1]  # only what changed
    n = open_round.number
    assert f"It applies from round {n + 1}, the next round the scheduler opens" in page
    assert f"round {n}, in flight, finishes under default v1" in page
    assert RoundPolicy.objects.filter(name="default").count() == 1  # nothing saved yet
    # the confirmation posts every value again, with `confirmed`
    html = response.content.decode()
    assert 'name="min_banks" value="4"' in html and 'name="confirmed" value="yes"' in html
    confirm = {**data, "confirmed": "yes"}
    assert op.post(f"/policies/{policy.pk}/new-version", confirm).status_code == 302
    new = RoundPolicy.objects.get(name="default", version=2)
    assert (new.min_banks, new.model_spec["hidden"]) == (4, [16, 8])


def test_back_to_the_form_keeps_the_values_typed(op, epoch, policy):
    data = form_post(policy, confirmed=False, min_banks="5", edit="yes")
    response = op.post(f"/policies/{policy.pk}/new-version", data)
    assert response.status_code == 200
    assert 'name="min_banks" value="5"' in response.content.decode()
    assert RoundPolicy.objects.filter(name="default").count() == 1


def test_an_inactive_new_policy_says_it_waits_for_activation_and_compares_with_the_active(
    op, epoch, policy
):
    data = {**form_post(policy, confirmed=False, max_rounds="20"), "name": "wider"}
    page = text(op.post("/policies/new", data))
    assert "What changes from default v1 , the active policy" in page
    assert "Maximum rounds 3 → 20" in page
    assert "It is saved inactive: it applies from the next round" in page


def test_a_version_identical_to_its_base_says_nothing_differs(op, epoch, policy):
    page = text(op.post(f"/policies/{policy.pk}/new-version", form_post(policy, confirmed=False)))
    assert "No setting differs." in page


# --- comparing, rounds, maximum rounds --------------------------------------------------------


def test_any_two_versions_are_compared_field_by_field_in_words(
    op, epoch, policy, auditor, client_for
):
    other = policy_create(
        name="other",
        actor="test",
        min_banks=5,
        deadline=timedelta(minutes=90),
        model_spec={"kind": "mlp", "hidden": [16], "seed": 1, "loss": "focal"},
        dp_target_epsilon=8.0,
    )
    client = client_for(auditor)  # every role may read
    response = client.get(f"/policies/compare?a={policy.pk}&b={other.pk}")
    assert response.status_code == 200
    page = text(response)
    for words in [
        "Minimum banks 3 → 5",
        "Deadline 10 min → 1 h 30 min",
        "Hidden layer widths 8 → 16",
        "Loss bce → focal",
        "Privacy budget ε off → 8.0",
        "Feature statistics round first no → yes",
        "Secure aggregation v1 → v2",
    ]:
        assert words in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("a=999&b={pk}", "From: 999 is not a policy version"),
        ("a={pk}", "To: Choose a policy version"),
    ],
)
def test_a_comparison_of_an_unknown_or_missing_version_is_a_400_naming_it(
    op, policy, query, message
):
    response = op.get("/policies/compare?" + query.format(pk=policy.pk))
    assert response.status_code == 400
    assert message in text(response)


def test_the_compare_page_without_versions_offers_the_pickers(op, policy):
    response = op.get("/policies/compare")
    assert response.status_code == 200 and "default v1" in text(response)


def test_a_version_links_the_rounds_it_ran_and_says_what_its_maximum_counts(op, open_round, policy):
    Round.objects.filter(pk=open_round.pk).update(
        kind=RoundKind.STATISTICS, state=RoundState.PUBLISHED
    )
    later = Round.objects.create(
        number=open_round.number + 1,
        kind=RoundKind.TRAINING,
        state=RoundState.PUBLISHED,
        policy=policy,
        policy_snapshot=open_round.policy_snapshot,
        key_epoch=open_round.key_epoch,
        vector_length=open_round.vector_length,
        opened_at=open_round.opened_at,
        deadline_at=open_round.deadline_at,
    )
    response = op.get(f"/policies/{policy.pk}/")
    html, page = response.content.decode(), text(response)
    assert (
        f'href="/rounds/{later.number}/"' in html and f'href="/rounds/{open_round.number}/"' in html
    )
    assert f"Applies from round {open_round.number} , the first round" in page
    assert "3 published training rounds; 1 published so far" in page
    assert "The statistics round, evaluation rounds and failed rounds do not count" in page
    assert "2 in all (1 published statistics, 1 published training)" in page
    listed = text(op.get("/policies/"))
    assert "1 of 3" in listed  # the list counts as the scheduler does


def test_a_later_version_links_what_changed_from_the_one_before(op, epoch, policy):
    op.post(f"/policies/{policy.pk}/new-version", form_post(policy, min_banks="4"))
    new = RoundPolicy.objects.get(name="default", version=2)
    html = op.get(f"/policies/{new.pk}/").content.decode()
    assert f'href="/policies/compare?a={policy.pk}&amp;b={new.pk}"' in html
    assert "Applies from round 1, the next round the scheduler opens." in text(
        op.get(f"/policies/{new.pk}/")
    )


def test_a_representative_reads_the_rounds_a_version_ran_without_links_it_cannot_follow(
    open_round, policy, bank_rep, client_for
):
    response = client_for(bank_rep).get(f"/policies/{policy.pk}/")
    assert response.status_code == 200
    assert f"Round {open_round.number}" in text(response)
    assert f'href="/rounds/{open_round.number}/"' not in response.content.decode()


def test_a_first_policy_with_none_active_says_there_is_nothing_to_compare(op, epoch, policy):
    RoundPolicy.objects.filter(pk=policy.pk).update(active=False)
    data = {**form_post(policy, confirmed=False), "name": "first"}
    page = text(op.post("/policies/new", data))
    assert "No policy is active, so there is nothing to compare it with." in page
    assert "Save first v1?" in page

"""Server optimisers at the portal: policy fields refused with reasons, the model digests the
nodes report compared, a divergence audited and shown on the round's page."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from django.apps import apps
from django.core.management.base import CommandError

from audit.models import AuditEvent
from consortium.rounds.models import Round, RoundPolicy, RoundState
from protocol import PolicySnapshot
from tests.consortium.secagg_rounds.conftest import MODEL
from tests.consortium.test_operator_cli import _policy_file, run

pytestmark = pytest.mark.django_db

DIGEST_A, DIGEST_B = "a" * 64, "b" * 64


def _post(client: Any, **fields: Any) -> Any:
    body = {"name": "optimised", "model_spec": MODEL, **fields}
    return client.post("/api/v1/policies/", body, content_type="application/json")


def test_the_policy_api_sets_the_server_optimiser_into_the_snapshot(client, operator):
    client.force_login(operator)
    response = _post(client, server_optimizer="fedadam", server_lr=0.03, server_tau=0.01)
    assert response.status_code == 201, response.content
    snapshot = response.json()["snapshot"]
    assert (snapshot["server_optimizer"], snapshot["server_lr"]) == ("fedadam", 0.03)
    assert snapshot["server_tau"] == 0.01 and snapshot["server_beta2"] == 0.99


def test_the_policy_api_takes_feddyn_with_its_alpha_from_fedprox_mu(client, operator):
    client.force_login(operator)
    response = _post(client, server_optimizer="feddyn", fedprox_mu=0.01)
    assert response.status_code == 201, response.content
    snapshot = PolicySnapshot.from_dict(response.json()["snapshot"])
    assert (snapshot.server_optimizer, snapshot.fedprox_mu) == ("feddyn", 0.01)
    assert b'"server_optimizer":"feddyn"' in snapshot.canonical_json()  # in what banks sign


def test_a_policy_made_without_the_fields_runs_fedavg_with_its_old_digest(client, operator):
    client.force_login(operator)
    data = _post(client).json()
    assert data["snapshot"]["server_optimizer"] == "fedavg"
    assert b"server_" not in PolicySnapshot.from_dict(data["snapshot"]).canonical_json()


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"server_optimizer": "adam"}, "server_optimizer:"),
        ({"server_lr": 0}, "server_lr: must be in (0, 10]"),
        ({"server_lr": 50}, "server_lr: must be in (0, 10]"),
        ({"server_momentum": 1.0}, "server_momentum: must be in [0, 1)"),
        ({"server_beta1": -0.5}, "server_beta1: must be in [0, 1)"),
        ({"server_beta2": 1.5}, "server_beta2: must be in [0, 1)"),
        ({"server_tau": 0}, "server_tau: must be in (0, 1]"),
        ({"server_optimizer": "feddyn"}, "fedprox_mu: feddyn takes its alpha from fedprox_mu"),
        (
            {"server_optimizer": "feddyn", "fedprox_mu": 0.01, "dp_target_epsilon": 5.0},
            "server_optimizer: feddyn is not available with DP-SGD",
        ),
    ],
)
def test_the_policy_api_refuses_a_bad_server_optimiser_naming_the_field(
    client, operator, fields, words
):
    client.force_login(operator)
    response = _post(client, **fields)
    assert response.status_code == 400, response.content
    assert words in response.json()["message"]
    assert not RoundPolicy.objects.filter(name="optimised").exists()


def _report(client: Any, rnd: Round, bank: Any, **body: Any) -> Any:
    url = f"/api/v1/rounds/{rnd.number}/metrics"
    return client.post(url, body, content_type="application/json", **bank.auth())


@pytest.fixture
def published(open_round: Round) -> Round:
    Round.objects.filter(pk=open_round.pk).update(state=RoundState.PUBLISHED)
    open_round.refresh_from_db()
    return open_round


def _diverged() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="round.model_diverged"))


def test_a_node_reports_its_model_digest_without_sharing_figures(client, published, bank_alpha):
    response = _report(client, published, bank_alpha, metrics={}, model_digest=DIGEST_A)
    assert response.status_code == 200, response.content
    assert published.metric_reports.get().model_digest == DIGEST_A


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"metrics": {}}, "or a model_digest"),
        ({"metrics": {"auprc": 0.5}, "model_digest": "xyz"}, "model_digest must be 64"),
    ],
)
def test_a_report_with_nothing_or_a_malformed_digest_is_a_400(
    client, published, bank_alpha, body, words
):
    response = _report(client, published, bank_alpha, **body)
    assert response.status_code == 400
    assert words in response.json()["message"]


def test_the_same_digest_from_every_node_is_not_flagged(
    client, published, bank_alpha, bank_beta, operator
):
    for bank in (bank_alpha, bank_beta):
        _report(client, published, bank, metrics={"auprc": 0.5}, model_digest=DIGEST_A)
    assert _diverged() == []
    client.force_login(operator)
    page = client.get(f"/rounds/{published.number}/").content.decode()
    assert "all 2 reporting nodes produced the same model" in page
    assert "DIVERGED" not in page


def test_a_node_whose_digest_differs_is_audited_and_flagged_on_the_round_page(
    client, published, bank_alpha, bank_beta, bank_gamma, operator
):
    _report(client, published, bank_alpha, metrics={}, model_digest=DIGEST_A)
    _report(client, published, bank_beta, metrics={}, model_digest=DIGEST_A)
    _report(client, published, bank_gamma, metrics={}, model_digest=DIGEST_B)
    (event,) = _diverged()
    assert event.actor == "bank:gamma"
    assert event.data["model_digest"] == DIGEST_B
    assert event.data["others"] == {"alpha": DIGEST_A, "beta": DIGEST_A}
    client.force_login(operator)
    page = client.get(f"/rounds/{published.number}/").content.decode()
    assert "DIVERGED: the nodes produced different models" in page
    assert "gamma" in page and DIGEST_B[:16] in page


def test_the_migration_fills_old_snapshots_with_fedavg_and_keeps_their_digest(published):
    snapshot = dict(published.policy_snapshot)
    before = PolicySnapshot.from_dict(snapshot).digest()
    old = {k: v for k, v in snapshot.items() if not k.startswith("server_")}
    Round.objects.filter(pk=published.pk).update(policy_snapshot=old)
    migration = importlib.import_module("consortium.rounds.migrations.0009_server_optimizer")
    migration._snapshots_fedavg(apps, None)
    published.refresh_from_db()
    assert published.policy_snapshot["server_optimizer"] == "fedavg"
    assert PolicySnapshot.from_dict(published.policy_snapshot).digest() == before


def test_policy_create_reads_the_server_optimiser_from_a_policy_file(tmp_path):
    body = 'name = "fraud"\nserver_optimizer = "fedyogi"\nserver_lr = 0.05\n'
    run("policy_create", "--file", str(_policy_file(tmp_path, body)))
    policy = RoundPolicy.objects.get(name="fraud")
    assert (policy.server_optimizer, policy.server_lr) == ("fedyogi", 0.05)
    assert policy.as_snapshot().server_tau == 0.001


def test_policy_create_names_the_line_of_a_server_optimiser_it_refuses(tmp_path):
    body = 'name = "fraud"\nserver_optimizer = "fedadam"\nserver_beta2 = 1.0\n'
    with pytest.raises(CommandError, match=r"server_beta2.*line 3"):
        run("policy_create", "--file", str(_policy_file(tmp_path, body)))

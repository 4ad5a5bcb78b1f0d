"""Idempotency-Key: a POST retried after a lost answer runs once, whoever retries it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from bank_node.portal_client import BankClient, OperatorClient, PortalError
from consortium.api.idempotency import HEADER, REPLAYED_HEADER
from consortium.api.models import IdempotentRequest
from consortium.members.models import Bank
from consortium.rounds.management.commands import run_scheduler
from consortium.rounds.models import RoundPolicy
from tests.portal_transport import AnswersLost, DjangoTransport

pytestmark = pytest.mark.django_db

POLICY = {"name": "retried", "min_banks": 3, "local_epochs": 2}


def _operator_client(client: Client, transport: DjangoTransport, user: str) -> OperatorClient:
    portal = OperatorClient("http://testserver", user, "operator-password-1", max_retries=2)
    portal.session.mount("http://testserver", transport)
    return portal


def _second_operator() -> User:
    user = User.objects.create_user("oscar", password="operator-password-1")
    user.groups.add(Group.objects.get_or_create(name="operators")[0])
    return user


def _post(client: Client, path: str, body: dict[str, Any], key: str) -> Any:
    return client.post(
        f"/api/v1/{path}", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )


def test_a_policy_post_retried_after_a_timeout_that_succeeded_creates_one_version(client, operator):
    transport = AnswersLost(client)
    portal = _operator_client(client, transport, "olivia")
    answer = portal.policy_create(**POLICY)
    assert portal.retries_made == 1 and len(transport.sent) == 2
    keys = {sent.headers[HEADER] for sent in transport.sent}
    assert len(keys) == 1 and len(keys.pop()) >= 16  # one random key on both attempts
    assert RoundPolicy.objects.filter(name="retried").count() == 1
    stored = RoundPolicy.objects.get(name="retried")
    assert (answer["id"], answer["version"]) == (stored.pk, stored.version) == (stored.pk, 1)


def test_a_bank_onboarded_through_a_lost_answer_gets_its_credential_on_the_retry(client, operator):
    portal = _operator_client(client, AnswersLost(client), "olivia")
    answer = portal.bank_create("kappa", "Kappa Bank")
    assert Bank.objects.filter(slug="kappa").count() == 1
    node = BankClient("http://testserver", answer["credential"], max_retries=0)
    node.session.mount("http://testserver", DjangoTransport(client))
    assert node.me().slug == "kappa"  # the credential of the first, lost answer works
    # Kept encrypted under the caller's key: the database does not hold the credential.
    (row,) = IdempotentRequest.objects.all()
    assert answer["credential"].encode() not in bytes(row.response)


def test_a_bank_nodes_refused_objection_leaves_no_key_behind(client, bank_alpha):
    first = client.post(
        "/api/v1/objections",
        {"objection": {}, "signature": ""},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k" * 20,
        **bank_alpha.auth(),
    )
    assert first.status_code == 400  # a refusal is not kept: nothing was done
    assert IdempotentRequest.objects.count() == 0


def test_the_replay_answers_the_first_status_and_body_and_says_so(client, operator):
    client.force_login(operator)
    first = _post(client, "policies/", POLICY, "replayed-key-0001")
    again = _post(client, "policies/", POLICY, "replayed-key-0001")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again[REPLAYED_HEADER] == "true" and REPLAYED_HEADER not in first
    assert RoundPolicy.objects.filter(name="retried").count() == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [("policies/", {**POLICY, "local_epochs": 3}), ("banks/", {"slug": "retried"})],
)
def test_a_key_reused_for_another_request_is_a_422_that_says_so(client, operator, path, body):
    client.force_login(operator)
    assert _post(client, "policies/", POLICY, "reused-key-000001").status_code == 201
    response = _post(client, path, body, "reused-key-000001")
    assert response.status_code == 422
    assert "already used for a different request" in response.json()["message"]
    assert response.json()["extra"] == {"idempotency_key_reused": True}
    assert RoundPolicy.objects.filter(name="retried").count() == 1
    assert not Bank.objects.filter(slug="retried").exists()


def test_one_callers_keys_are_not_visible_to_another(client, operator):
    client.force_login(operator)
    assert _post(client, "policies/", POLICY, "shared-key-000001").status_code == 201
    client.force_login(_second_operator())
    other = _post(client, "policies/", POLICY, "shared-key-000001")
    assert other.status_code == 201 and REPLAYED_HEADER not in other
    assert other.json()["version"] == 2  # ran: a second version, not the first's answer
    assert sorted(IdempotentRequest.objects.values_list("caller", flat=True)) == [
        f"user:{operator.pk}",
        f"user:{User.objects.get(username='oscar').pk}",
    ]


def test_a_refused_request_is_not_kept_and_its_key_can_run_a_corrected_one(client, operator):
    client.force_login(operator)
    refused = _post(client, "policies/", {**POLICY, "min_banks": 1}, "corrected-key-001")
    assert refused.status_code == 400
    assert _post(client, "policies/", POLICY, "corrected-key-001").status_code == 201


def test_a_key_older_than_a_day_is_pruned_and_its_request_runs_again(client, operator):
    client.force_login(operator)
    assert _post(client, "policies/", POLICY, "expiring-key-0001").status_code == 201
    day_ago = IdempotentRequest.objects.get().created_at - timedelta(hours=24, seconds=1)
    IdempotentRequest.objects.update(created_at=day_ago)
    again = _post(client, "policies/", POLICY, "expiring-key-0001")
    assert again.status_code == 201 and again.json()["version"] == 2
    assert IdempotentRequest.objects.get().created_at > day_ago


@pytest.mark.parametrize(
    "key", ["short", "x" * 201, "has spaces in the key", "ключ-ключ-ключ-ключ"]
)
def test_a_malformed_key_is_a_400_naming_the_header(client, operator, key):
    client.force_login(operator)
    response = _post(client, "policies/", POLICY, key)
    assert response.status_code == 400
    assert response.json()["message"].startswith(f"{HEADER} must be 16 to 200 printable ASCII")
    assert not RoundPolicy.objects.filter(name="retried").exists()


def test_the_scheduler_forgets_every_callers_answers_once_a_day_old(client, operator, monkeypatch):
    # The command closes stale connections each tick; the test's is the one it must keep.
    monkeypatch.setattr(run_scheduler, "close_old_connections", lambda: None)
    client.force_login(operator)
    assert _post(client, "policies/", POLICY, "old-answer-key-01").status_code == 201
    assert _post(client, "policies/", POLICY, "new-answer-key-01").status_code == 201
    day_ago = timezone.now() - timedelta(hours=24, seconds=1)
    IdempotentRequest.objects.filter(pk=IdempotentRequest.objects.earliest("pk").pk).update(
        created_at=day_ago
    )
    call_command("run_scheduler", "--once", "--metrics-port", "0")
    (kept,) = IdempotentRequest.objects.all()
    assert kept.created_at > day_ago


def test_a_post_without_a_key_still_runs_as_before(client, operator):
    client.force_login(operator)
    for version in (1, 2):
        response = client.post("/api/v1/policies/", POLICY, content_type="application/json")
        assert response.json()["version"] == version
    assert IdempotentRequest.objects.count() == 0


def _api_views(patterns: list[Any]) -> list[Any]:
    views = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            views += _api_views(pattern.url_patterns)
        elif isinstance(pattern, URLPattern) and hasattr(pattern.callback, "cls"):
            views.append(pattern.callback.cls)
    return views


def test_every_post_of_the_api_takes_an_idempotency_key():
    api = [p for p in get_resolver().url_patterns if str(p.pattern).startswith("api/")]
    posting = {v for v in _api_views(api) if hasattr(v, "post")}
    missing = sorted(
        v.__name__
        for v in posting
        if not getattr(v.post, "idempotent", False)  # a post of its own, or a generic's
        and not getattr(getattr(v, "create", None), "idempotent", False)
    )
    assert len(posting) >= 10  # banks, policies, roster, objections, reveals, verdicts...
    assert missing == []


def test_the_node_client_does_not_retry_a_refusal(client, operator):
    portal = _operator_client(client, DjangoTransport(client), "olivia")
    with pytest.raises(PortalError, match="min_banks"):
        portal.policy_create(**{**POLICY, "min_banks": 1})
    assert portal.retries_made == 0


def test_the_openapi_schema_offers_the_key_on_the_idempotent_posts_only(client):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]

    def headers(path: str, method: str) -> set[str]:
        parameters = paths[path][method].get("parameters", [])
        return {p["name"] for p in parameters if p["in"] == "header"}

    assert "Idempotency-Key" in headers("/api/v1/policies/", "post")
    assert "Idempotency-Key" in headers("/api/v1/banks/", "post")
    assert "Idempotency-Key" not in headers("/api/v1/policies/", "get")
    assert "Idempotency-Key" not in headers("/api/v1/rounds/{number}/update", "put")
    offered = sum("Idempotency-Key" in headers(p, "post") for p in paths if "post" in paths[p])
    assert offered >= 10  # every POST view wears the decorator (14 when written)

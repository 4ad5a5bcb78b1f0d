"""Every page and every action, for every role: who may look, who may act, who is refused."""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditEvent
from consortium.members.models import Bank, BankStatus
from consortium.rounds.models import RoundPolicy

pytestmark = pytest.mark.django_db

ROLES = ["operator", "auditor", "bank_rep", "roleless", "anonymous"]
OK, LOGIN, FORBIDDEN, NOT_FOUND = 200, "login", 403, 404
REP_HOME = "rep-home"  # the overview sends a representative to their own bank

# page -> expected answer per role, in ROLES order
PAGES: dict[str, tuple[Any, ...]] = {
    "/": (OK, OK, REP_HOME, FORBIDDEN, LOGIN),
    "/rounds/": (OK, OK, FORBIDDEN, FORBIDDEN, LOGIN),
    "/rounds/{round}/": (OK, OK, FORBIDDEN, FORBIDDEN, LOGIN),
    "/rounds/progress": (OK, OK, FORBIDDEN, FORBIDDEN, LOGIN),
    "/banks/": (OK, OK, FORBIDDEN, FORBIDDEN, LOGIN),
    "/banks/new": (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, LOGIN),
    "/banks/alpha/": (OK, OK, OK, FORBIDDEN, LOGIN),
    "/banks/beta/": (OK, OK, NOT_FOUND, FORBIDDEN, LOGIN),
    "/policies/": (OK, OK, OK, FORBIDDEN, LOGIN),
    "/policies/{policy}/": (OK, OK, OK, FORBIDDEN, LOGIN),
    "/policies/new": (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, LOGIN),
    "/policies/compare": (OK, OK, OK, FORBIDDEN, LOGIN),
    "/policies/{policy}/new-version": (OK, FORBIDDEN, FORBIDDEN, FORBIDDEN, LOGIN),
    "/audit/": (OK, OK, FORBIDDEN, FORBIDDEN, LOGIN),
    "/audit/verification": (OK, OK, FORBIDDEN, FORBIDDEN, LOGIN),
}

# action -> (form data, what the operator gets)
ACTIONS: dict[str, tuple[dict[str, str], int]] = {
    "/banks/new": ({"slug": "delta", "name": "Delta"}, 200),
    "/banks/beta/status": ({"action": "suspend", "reason": "test", "confirmed": "yes"}, 302),
    "/banks/beta/rotate-credential": ({"confirmed": "yes"}, 200),
    "/banks/beta/signing-key": ({"public_key": "not a key"}, 400),
    "/banks/beta/representatives": ({"username": "nora"}, 302),
    "/policies/new": ({"name": "other"}, 400),
    "/policies/{policy}/new-version": ({"min_banks": "1"}, 400),
    "/policies/{policy}/activate": ({}, 302),
}


@pytest.fixture
def people(operator: Any, auditor: Any, bank_rep: Any, roleless: Any) -> dict[str, Any]:
    return {
        "operator": operator,
        "auditor": auditor,
        "bank_rep": bank_rep,
        "roleless": roleless,
        "anonymous": None,
    }


@pytest.fixture
def world(open_round: Any, policy: Any) -> dict[str, int]:
    return {"round": open_round.number, "policy": policy.pk}


def _check(response: Any, expected: Any, url: str) -> None:
    if expected == LOGIN:
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")
    elif expected == REP_HOME:
        assert response.status_code == 302
        assert response["Location"] == "/banks/alpha/"
    else:
        assert response.status_code == expected, (url, response.status_code)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("page", list(PAGES))
def test_each_page_answers_each_role_as_the_matrix_says(page, role, people, world, client_for):
    url = page.format(**world)
    response = client_for(people[role]).get(url)
    _check(response, PAGES[page][ROLES.index(role)], url)
    if response.status_code == 200:
        assert response["Cache-Control"] == "no-store"
        assert "default-src 'self'" in response["Content-Security-Policy"]


@pytest.mark.parametrize("action", list(ACTIONS))
def test_nobody_but_an_operator_can_post_an_action_and_a_refusal_changes_nothing(
    action, people, world, client_for, subtests
):
    url, data = action.format(**world), ACTIONS[action][0]
    for role in ["auditor", "bank_rep", "roleless", "anonymous"]:
        with subtests.test(role=role):
            client = client_for(people[role])  # signing in is itself an audit event
            events = AuditEvent.objects.count()
            banks = list(Bank.objects.values_list("slug", "status", "credential_hash"))
            policies = list(RoundPolicy.objects.values_list("pk", "active"))
            response = client.post(url, data)
            _check(response, LOGIN if role == "anonymous" else FORBIDDEN, url)
            assert AuditEvent.objects.count() == events
            assert list(Bank.objects.values_list("slug", "status", "credential_hash")) == banks
            assert list(RoundPolicy.objects.values_list("pk", "active")) == policies


@pytest.mark.parametrize("action", list(ACTIONS))
def test_an_operator_can_post_every_action(action, people, world, client_for):
    data, expected = ACTIONS[action]
    response = client_for(people["operator"]).post(action.format(**world), data)
    assert response.status_code == expected, response.content[:500]


def test_a_superuser_counts_as_an_operator(db, world, client_for, django_user_model):
    root = django_user_model.objects.create_superuser("root", password="root-password-1")
    client = client_for(root)
    assert client.get("/banks/new").status_code == 200
    suspend = {"action": "suspend", "reason": "test", "confirmed": "yes"}
    assert client.post("/banks/beta/status", suspend).status_code == 302
    assert Bank.objects.get(slug="beta").status == BankStatus.SUSPENDED


@pytest.mark.parametrize("url", ["/banks/beta/status", "/policies/{policy}/activate"])
def test_actions_refuse_get(url, people, world, client_for):
    assert client_for(people["operator"]).get(url.format(**world)).status_code == 405


def test_a_post_without_the_csrf_token_is_refused(operator, world):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    suspend = {"action": "suspend", "reason": "test", "confirmed": "yes"}
    response = client.post("/banks/beta/status", suspend)
    assert response.status_code == 403
    assert Bank.objects.get(slug="beta").status == BankStatus.ACTIVE


def test_signing_in_with_a_password_lands_on_the_overview(operator, client):
    page = client.get("/login/")
    assert page.status_code == 200 and b"csrfmiddlewaretoken" in page.content
    response = client.post("/login/", {"username": "olivia", "password": "operator-password-1"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_a_wrong_password_is_refused_with_a_message(operator, client):
    response = client.post("/login/", {"username": "olivia", "password": "nope"})
    assert response.status_code == 200
    assert b"did not match" in response.content


def test_signing_out_needs_a_post_and_ends_the_session(operator, client_for):
    client = client_for(operator)
    assert client.post("/logout/").status_code == 302
    assert client.get("/")["Location"].startswith("/login/")


def test_with_secure_cookies_on_the_session_and_csrf_cookies_are_secure(operator, client, settings):
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    client.get("/login/")
    response = client.post("/login/", {"username": "olivia", "password": "operator-password-1"})
    session = response.cookies[settings.SESSION_COOKIE_NAME]
    assert session["secure"] and session["httponly"]
    assert client.cookies[settings.CSRF_COOKIE_NAME]["secure"]


def test_the_login_page_carries_the_portal_headers(client):
    response = client.get("/login/")
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY"

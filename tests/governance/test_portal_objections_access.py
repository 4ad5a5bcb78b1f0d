"""Objections are recorded and shown to everyone; who may call the roster routes and page."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from portal_helpers import Founder, basic, post
from roster_helpers import NOW, new_bank

from audit.models import AuditEvent
from consortium.governance.models import Objection as ObjectionRow
from consortium.members.models import Bank, BankStatus
from consortium.portal.models import BankRepresentative
from governance import Objection, sign_objection

pytestmark = pytest.mark.django_db

ANON, NO_ROLE, BANK, OPERATOR, AUDITOR = "anonymous", "no-role", "bank", "operator", "auditor"
EVERYONE_WITH_A_ROLE = {BANK, OPERATOR, AUDITOR}

# (path, method, callers let through) for the roster routes.
MATRIX: list[tuple[str, str, set[str]]] = [
    ("/api/v1/roster", "GET", EVERYONE_WITH_A_ROLE),
    ("/api/v1/roster/proposals", "POST", {OPERATOR}),
    ("/api/v1/roster/versions/1/signatures", "POST", {BANK}),
    ("/api/v1/roster/versions/1/withdraw", "POST", {OPERATOR}),
    ("/api/v1/objections", "GET", EVERYONE_WITH_A_ROLE),
    ("/api/v1/objections", "POST", {BANK}),
]


def _objection(founder: Founder, *, bank_id: str | None = None, key: Any = None) -> dict:
    objection = Objection(
        consortium_id="acme",
        round_number=3,
        bank_id=bank_id or founder.slug,
        reason_code="unknown_bank",
        message="round 3's manifest names bank 'sham', which is not on the roster",
        created_at=NOW,
    )
    signature = sign_objection(objection, key or founder.keys.key)
    return {"objection": objection.to_dict(), "signature": signature}


@pytest.fixture
def auditor_headers(auditor: Any) -> dict[str, Any]:
    return basic("audrey", "auditor-password-1")


def test_an_objection_is_recorded_audited_and_visible_to_everyone(client, founded, auditor_headers):
    alpha = founded["alpha"]
    response = post(client, "/api/v1/objections", _objection(alpha), alpha.auth())
    assert response.status_code == 201, response.json()
    assert AuditEvent.objects.filter(action="objection.recorded").count() == 1
    for headers in (
        founded["beta"].auth(),
        basic("olivia", "operator-password-1"),
        auditor_headers,
    ):
        listed = client.get("/api/v1/objections", **headers).json()["results"]
        assert [(o["bank"], o["reason_code"], o["round_number"]) for o in listed] == [
            ("alpha", "unknown_bank", 3)
        ]


def test_resending_the_same_objection_stores_it_once(client, founded):
    alpha = founded["alpha"]
    body = _objection(alpha)
    post(client, "/api/v1/objections", body, alpha.auth())
    post(client, "/api/v1/objections", body, alpha.auth())
    assert ObjectionRow.objects.count() == 1


def test_an_objection_with_a_forged_signature_is_refused_and_not_stored(client, founded):
    alpha = founded["alpha"]
    forged = _objection(alpha, key=new_bank("alpha").key)
    response = post(client, "/api/v1/objections", forged, alpha.auth())
    assert response.status_code == 403
    assert "does not verify" in response.json()["message"]
    assert not ObjectionRow.objects.exists()
    assert AuditEvent.objects.filter(action="objection.refused").count() == 1


def test_a_bank_cannot_object_in_another_banks_name(client, founded):
    beta = founded["beta"]
    in_betas_name = _objection(beta)  # validly signed by beta, sent with alpha's credential
    response = post(client, "/api/v1/objections", in_betas_name, founded["alpha"].auth())
    assert response.status_code == 403
    assert "only for itself" in response.json()["message"]
    assert not ObjectionRow.objects.exists()


def test_an_objection_for_an_impossible_round_number_is_a_400(client, founded):
    alpha = founded["alpha"]
    objection = Objection("acme", 2**40, "alpha", "unknown_bank", "no", NOW)
    body = {
        "objection": objection.to_dict(),
        "signature": sign_objection(objection, alpha.keys.key),
    }
    response = post(client, "/api/v1/objections", body, alpha.auth())
    assert response.status_code == 400
    assert "round_number" in response.json()["message"]


def test_an_objection_before_any_genesis_is_refused(client, founders):
    alpha = founders["alpha"]
    response = post(client, "/api/v1/objections", _objection(alpha), alpha.auth())
    assert response.status_code == 409
    assert not ObjectionRow.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"objection": {"bank_id": "alpha"}, "signature": "x"},
        {"objection": "I object", "signature": "x"},
        {"signature": "x"},
    ],
)
def test_a_malformed_objection_is_a_400_naming_the_problem(client, founded, body):
    response = post(client, "/api/v1/objections", body, founded["alpha"].auth())
    assert response.status_code == 400
    assert response.json()["message"]
    assert not ObjectionRow.objects.exists()


@pytest.fixture
def callers(founded: dict[str, Founder], auditor: Any) -> dict[str, dict[str, str]]:
    User.objects.create_user("nora", password="no-role-password-1")
    return {
        ANON: {},
        NO_ROLE: basic("nora", "no-role-password-1"),
        BANK: founded["alpha"].auth(),
        OPERATOR: basic("olivia", "operator-password-1"),
        AUDITOR: basic("audrey", "auditor-password-1"),
    }


def test_each_roster_route_lets_through_exactly_its_callers(client, callers):
    wrong = []
    for path, method, allowed in MATRIX:
        for who, headers in callers.items():
            before = AuditEvent.objects.count()
            response = client.generic(
                method, path, data=b"{}", content_type="application/json", **headers
            )
            code = response.status_code
            if code >= 500:
                wrong.append((method, path, who, code))
            elif who in allowed and code in (401, 403):
                wrong.append((method, path, who, code))
            elif who not in allowed and code != (401 if who == ANON else 403):
                wrong.append((method, path, who, code))
            elif who not in allowed and AuditEvent.objects.count() != before:
                wrong.append((method, path, who, "audit event written"))
    assert wrong == []


@pytest.mark.parametrize("status", [BankStatus.SUSPENDED, BankStatus.REVOKED])
def test_a_suspended_or_revoked_banks_credential_reads_nothing(client, founded, status):
    Bank.objects.filter(slug="alpha").update(status=status)
    for path in ("/api/v1/roster", "/api/v1/objections"):
        assert client.get(path, **founded["alpha"].auth()).status_code == 401


# --- the web portal's Roster page ----------------------------------------------------------


def _rep(bank_slug: str) -> User:
    user = User.objects.create_user(f"rep-{bank_slug}", password="representative-password-1")
    bank = Bank.objects.get(slug=bank_slug)
    BankRepresentative.objects.create(user=user, bank=bank, created_by="test")
    return user


def test_the_roster_page_shows_members_history_pending_and_objections(client, founded, operator):
    alpha = founded["alpha"]
    post(client, "/api/v1/objections", _objection(alpha), alpha.auth())
    change = {"kind": "suspend_bank", "bank_id": "delta", "reason": "late"}
    post(
        client,
        "/api/v1/roster/proposals",
        {"change": change},
        basic("olivia", "operator-password-1"),
    )
    client.force_login(operator)
    page = client.get("/roster/")
    assert page.status_code == 200
    html = page.content.decode()
    for text in (
        "Gamma Bank",
        "Found consortium",
        "Suspend bank",
        "Not yet signed",
        "unknown_bank",
    ):
        assert text in html, text


@pytest.mark.parametrize("who", ["auditor", "representative"])
def test_auditors_and_representatives_read_the_roster_page(client, founded, auditor, who):
    client.force_login(auditor if who == "auditor" else _rep("beta"))
    response = client.get("/roster/")
    assert response.status_code == 200
    assert b"roster-members" in response.content


def test_no_role_and_an_inactive_banks_representative_do_not_see_the_roster_page(client, founded):
    client.force_login(User.objects.create_user("nora", password="no-role-password-1"))
    assert client.get("/roster/").status_code == 403
    rep = _rep("beta")
    Bank.objects.filter(slug="beta").update(status=BankStatus.SUSPENDED)
    client.force_login(rep)
    assert client.get("/roster/").status_code == 403
    assert client.post("/roster/").status_code == 403


def test_an_anonymous_visitor_is_sent_to_sign_in(client, founded):
    response = client.get("/roster/")
    assert response.status_code == 302 and "/login/" in response["Location"]

"""Who may call what: every API endpoint against every kind of caller, and bank against bank.

The matrix names each route of /api/v1/; a route added without an entry here fails
`test_every_api_route_is_in_the_matrix`, so nobody ships an endpoint without deciding
who may call it.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from audit.models import AuditEvent
from consortium.members.models import BankStatus
from consortium.rounds.models import MetricReport, RoundState
from tests.conftest import Persona, encrypted_update, make_bank, upload_headers

pytestmark = pytest.mark.django_db

ANON, BANK, OPERATOR, AUDITOR = "anonymous", "bank", "operator", "auditor"
# People signed in with a web account: a representative of an active bank, of a suspended
# and of a revoked one, and an account with no role at all.
REP, REP_SUSPENDED, REP_REVOKED, NO_ROLE = "rep", "rep_suspended", "rep_revoked", "no_role"
# Who reads what the consortium shares: the banks, their representatives, and staff.
AUTHENTICATED = {BANK, REP, OPERATOR, AUDITOR}
STAFF = {OPERATOR, AUDITOR}

# (url name, method, callers let through). Path arguments are filled in by `_path`.
MATRIX: list[tuple[str, str, set[str]]] = [
    ("bank-me", "GET", {BANK}),
    ("bank-signing-key", "PUT", {BANK}),
    ("bank-list", "GET", {OPERATOR}),
    ("bank-list", "POST", {OPERATOR}),
    ("bank-rotate-credential", "POST", {OPERATOR}),
    ("bank-signing-key-rotate", "PUT", {OPERATOR}),
    ("bank-status", "POST", {OPERATOR}),
    ("round-list", "GET", AUTHENTICATED),
    ("round-current", "GET", AUTHENTICATED),
    ("round-detail", "GET", AUTHENTICATED),
    ("round-aggregate", "GET", AUTHENTICATED),
    ("round-update", "PUT", {BANK}),
    ("round-metrics", "POST", {BANK}),
    ("round-served-model", "PUT", {BANK}),
    ("round-mask-keys", "PUT", {BANK}),
    ("round-mask-keys", "GET", {BANK}),
    ("round-unmask", "GET", {BANK}),
    ("round-reveal", "POST", {BANK}),
    ("round-submission", "GET", AUTHENTICATED),
    # The evaluation gate: everyone reads the signed verdicts; only a bank posts its own.
    ("round-verdicts", "GET", AUTHENTICATED),
    ("round-verdicts", "POST", {BANK}),
    ("key-epoch-current", "GET", AUTHENTICATED),
    ("key-epoch-create", "POST", {OPERATOR}),
    ("policy-list", "GET", AUTHENTICATED),
    ("policy-list", "POST", {OPERATOR}),
    ("policy-activate", "POST", {OPERATOR}),
    ("policy-version", "GET", AUTHENTICATED),
    ("audit-events", "GET", STAFF),
    ("audit-verify", "GET", STAFF),
    ("audit-checkpoints", "GET", STAFF),
    ("audit-report", "GET", STAFF),
    ("roster", "GET", AUTHENTICATED),
    ("roster-proposals", "POST", {OPERATOR}),
    ("roster-signatures", "POST", {BANK}),
    ("roster-withdraw", "POST", {OPERATOR}),
    ("objections", "GET", AUTHENTICATED),
    ("objections", "POST", {BANK}),
    ("disputes", "GET", AUTHENTICATED),
    ("dispute-detail", "GET", AUTHENTICATED),
    # Only a bank signs a clearance; the operator has no way to clear a dispute.
    ("dispute-clearances", "POST", {BANK}),
    # Public by design: the key that verifies signed audit reports offline.
    ("audit-public-key", "GET", {ANON, *AUTHENTICATED, REP_SUSPENDED, REP_REVOKED, NO_ROLE}),
]


def _api_route_names() -> set[str | None]:
    names: set[str | None] = set()  # an unnamed route shows up as None and fails the match

    def walk(patterns: list[Any], prefix: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern) and (prefix + str(p.pattern)).startswith("api/v1/"):
                names.add(p.name)

    walk(get_resolver().url_patterns, "")
    return names


def test_every_api_route_is_in_the_matrix():
    assert _api_route_names() == {name for name, _, _ in MATRIX}


def _basic(username: str, password: str) -> dict[str, Any]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def _person(username: str, bank: Any = None) -> dict[str, str]:
    """A web account (with a representative link to ``bank`` if given); its basic auth."""
    from django.contrib.auth.models import User

    from consortium.portal.models import BankRepresentative

    user = User.objects.create_user(username, password=f"{username}-password-1")
    if bank is not None:
        BankRepresentative.objects.create(user=user, bank=bank, created_by="test")
    return _basic(username, f"{username}-password-1")


def _bank_in(slug: str, status: str) -> Any:
    bank = make_bank(slug).bank
    type(bank).objects.filter(pk=bank.pk).update(status=status)
    return bank


@pytest.fixture
def callers(bank_alpha: Persona, operator: Any, auditor: Any) -> dict[str, dict[str, str]]:
    return {
        ANON: {},
        BANK: bank_alpha.auth(),
        OPERATOR: _basic("olivia", "operator-password-1"),
        AUDITOR: _basic("audrey", "auditor-password-1"),
        REP: _person("rhea", bank_alpha.bank),
        REP_SUSPENDED: _person("sam", _bank_in("sigma", BankStatus.SUSPENDED)),
        REP_REVOKED: _person("rita", _bank_in("rho", BankStatus.REVOKED)),
        NO_ROLE: _person("nora"),
    }


def _path(name: str, rnd: Any) -> str:
    from django.urls import reverse

    kwargs = {
        "round-detail": {"number": rnd.number},
        "round-aggregate": {"number": rnd.number},
        "round-update": {"number": rnd.number},
        "round-metrics": {"number": rnd.number},
        "round-served-model": {"number": rnd.number},
        "round-mask-keys": {"number": rnd.number},
        "round-unmask": {"number": rnd.number},
        "round-reveal": {"number": rnd.number},
        "round-submission": {"number": rnd.number, "bank": "alpha"},
        "round-verdicts": {"number": rnd.number},
        # Another bank's slug: a bank must not act on it, and an operator's request is
        # refused for its empty body, so nothing changes either way.
        "bank-rotate-credential": {"slug": "gamma"},
        "bank-signing-key-rotate": {"slug": "gamma"},
        "bank-status": {"slug": "gamma", "action": "suspend"},
        "policy-activate": {"pk": rnd.policy_id},
        "policy-version": {"name": rnd.policy.name, "version": rnd.policy.version},
        "roster-signatures": {"number": 1},
        "roster-withdraw": {"number": 1},
        "dispute-detail": {"number": rnd.number},
        "dispute-clearances": {"number": rnd.number},
    }.get(name, {})
    return reverse(name, kwargs=kwargs)


def _call(client: Client, method: str, path: str, headers: dict[str, Any]) -> Any:
    # JSON-shaped bodies that no endpoint accepts as valid: only the permission layer
    # (or a 4xx of the view) answers, never a state change.
    body = b"" if method == "PUT" and path.endswith("/update") else b"{}"
    return client.generic(method, path, data=body, content_type="application/json", **headers)


def test_each_endpoint_lets_through_exactly_its_callers(client, open_round, bank_gamma, callers):
    # One test over the whole matrix (the fixtures cost seconds; 250 requests do not).
    wrong = []
    for name, method, allowed in MATRIX:
        path = _path(name, open_round)
        for who, headers in callers.items():
            before = AuditEvent.objects.count()
            response = _call(client, method, path, headers)
            if response.status_code >= 500:
                wrong.append((method, name, who, response.status_code))
            elif who in allowed:
                if response.status_code in (401, 403):
                    wrong.append((method, name, who, response.status_code))
            elif response.status_code != (401 if who == ANON else 403):
                wrong.append((method, name, who, response.status_code))
            elif not response.json()["message"]:
                wrong.append((method, name, who, "no message"))
            elif AuditEvent.objects.count() != before:
                # A refused call changes nothing, so it leaves no audit event either.
                wrong.append((method, name, who, "audit event written"))
    assert wrong == []


@pytest.mark.parametrize("status", [BankStatus.SUSPENDED, BankStatus.REVOKED])
def test_a_suspended_or_revoked_bank_is_refused_on_every_bank_endpoint_at_once(
    client, open_round, bank_alpha, status
):
    me = _path("bank-me", open_round)
    assert _call(client, "GET", me, bank_alpha.auth()).status_code == 200
    type(bank_alpha.bank).objects.filter(pk=bank_alpha.bank.pk).update(status=status)
    for name, method, allowed in MATRIX:
        if BANK not in allowed or ANON in allowed:
            continue
        response = _call(client, method, _path(name, open_round), bank_alpha.auth())
        assert response.status_code == 401, (method, name, response.content)
        assert status in response.json()["message"]


def test_a_deactivated_operator_is_refused_at_once(client, open_round, operator):
    headers = _basic("olivia", "operator-password-1")
    assert client.get("/api/v1/banks/", **headers).status_code == 200
    operator.is_active = False
    operator.save()
    assert client.get("/api/v1/banks/", **headers).status_code == 401


# --- bank against bank ---------------------------------------------------------------


def _put(client: Client, number: int, body: bytes, headers: dict[str, Any]) -> Any:
    return client.put(
        f"/api/v1/rounds/{number}/update",
        data=body,
        content_type="application/octet-stream",
        **headers,
    )


def test_a_bank_sees_only_its_own_record_and_its_own_submission(
    client, ckks, open_round, bank_alpha, bank_beta
):
    body, _ = encrypted_update(ckks, open_round.vector_length)
    assert (
        _put(client, open_round.number, body, upload_headers(bank_alpha, open_round.number, body))
    ).status_code == 201
    me = client.get("/api/v1/banks/me", **bank_beta.auth()).json()
    assert me["slug"] == "beta" and "credential" not in me and "credential_hash" not in me
    detail = f"/api/v1/rounds/{open_round.number}"
    assert client.get(detail, **bank_alpha.auth()).json()["submitted_by_you"] == (
        hashlib.sha256(body).hexdigest()
    )
    assert client.get(detail, **bank_beta.auth()).json()["submitted_by_you"] is None


def test_a_captured_upload_resent_under_another_banks_credential_is_refused(
    client, ckks, open_round, bank_alpha, bank_beta
):
    body, _ = encrypted_update(ckks, open_round.vector_length)
    captured = upload_headers(bank_alpha, open_round.number, body)
    stolen = {**captured, **bank_beta.auth()}
    response = _put(client, open_round.number, body, stolen)
    assert response.status_code == 403
    assert open_round.submissions.count() == 0
    # ...and alpha's own upload of the same bytes still goes through afterwards.
    assert _put(client, open_round.number, body, captured).status_code == 201
    assert list(open_round.submissions.values_list("bank__slug", flat=True)) == ["alpha"]


def test_a_bank_cannot_overwrite_another_banks_metrics(client, open_round, bank_alpha, bank_beta):
    type(open_round).objects.filter(pk=open_round.pk).update(state=RoundState.PUBLISHED)
    url = f"/api/v1/rounds/{open_round.number}/metrics"
    for persona, value in ((bank_alpha, 0.9), (bank_beta, 0.1)):
        response = client.post(
            url, {"metrics": {"auprc": value}}, content_type="application/json", **persona.auth()
        )
        assert response.status_code == 200
    reports = dict(MetricReport.objects.values_list("bank__slug", "metrics"))
    assert reports == {"alpha": {"auprc": 0.9}, "beta": {"auprc": 0.1}}


def test_a_bank_cannot_register_a_signing_key_for_another_bank(client, db):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from he.signing import public_key_b64

    alpha = make_bank("alpha", with_key=False)
    beta = make_bank("beta", with_key=False)
    key = public_key_b64(Ed25519PrivateKey.generate())
    response = client.put(
        "/api/v1/banks/me/signing-key",
        {"public_key": key, "bank": "alpha", "slug": "alpha"},
        content_type="application/json",
        **beta.auth(),
    )
    assert response.status_code == 200 and response.json()["slug"] == "beta"
    alpha.bank.refresh_from_db()
    beta.bank.refresh_from_db()
    assert alpha.bank.signing_public_key == "" and beta.bank.signing_public_key == key


# --- people: representatives and accounts without a role --------------------------------


def _api_views() -> list[tuple[str, Any]]:
    views: list[tuple[str, Any]] = []

    def walk(patterns: list[Any], prefix: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern) and (prefix + str(p.pattern)).startswith("api/"):
                views.append((p.name or str(p.pattern), p.callback))

    walk(get_resolver().url_patterns, "")
    return views


def test_every_api_view_declares_its_own_permissions():
    # The default (DenyAll) would close a view that forgot; this says which one forgot.
    def declared(view: Any) -> bool:
        if "permission_classes" in getattr(view, "view_initkwargs", {}):  # as_view(...)
            return True
        mro = view.cls.__mro__
        return any(
            "permission_classes" in vars(k) for k in mro if k.__module__.startswith("consortium.")
        )

    undeclared = [
        name for name, view in _api_views() if hasattr(view, "cls") and not declared(view)
    ]
    assert undeclared == []


def test_a_representative_sees_only_its_own_banks_submission_and_privacy_spend(
    client, ckks, open_round, bank_alpha, bank_beta
):
    from consortium.rounds.models import Submission

    for persona in (bank_alpha, bank_beta):
        body, _ = encrypted_update(ckks, open_round.vector_length, seed=len(persona.slug))
        headers = upload_headers(persona, open_round.number, body)
        assert _put(client, open_round.number, body, headers).status_code == 201
    Submission.objects.update(epsilon_spent=1.5, budget_left=True)
    rep = _person("rhea", bank_beta.bank)
    detail = client.get(f"/api/v1/rounds/{open_round.number}", **rep).json()
    assert [p["bank"] for p in detail["privacy"]] == ["beta"]
    beta_digest = Submission.objects.get(bank=bank_beta.bank).digest
    assert detail["submitted_by_you"] == beta_digest


@pytest.mark.parametrize("status", [BankStatus.SUSPENDED, BankStatus.REVOKED])
def test_a_representative_of_a_bank_that_is_not_active_is_told_why_it_sees_nothing(
    client, open_round, bank_alpha, status
):
    rep = _person("rhea", bank_alpha.bank)
    assert client.get("/api/v1/rounds/", **rep).status_code == 200
    type(bank_alpha.bank).objects.filter(pk=bank_alpha.bank.pk).update(status=status)
    response = client.get("/api/v1/rounds/", **rep)
    assert response.status_code == 403
    assert f"bank alpha is {status}" in response.json()["message"]


def test_an_account_with_no_role_sees_nothing_and_is_told_so(client, open_round):
    response = client.get(f"/api/v1/rounds/{open_round.number}", **_person("nora"))
    assert response.status_code == 403
    assert "representatives, operators and auditors" in response.json()["message"]

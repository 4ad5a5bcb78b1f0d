"""Rate limits: uploads per bank (DRF throttle, database cache) and sign-in (django-axes)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.backends.db import DatabaseCache
from django.test import Client

from consortium.api.throttles import BankUploadThrottle
from tests.conftest import encrypted_update, upload_headers

pytestmark = pytest.mark.django_db


@pytest.fixture
def upload_rate(settings: Any) -> str:
    rate = "3/min"
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"upload": rate},
    }
    return rate


def _put(client: Client, number: int, body: bytes, headers: dict[str, Any]) -> Any:
    return client.put(
        f"/api/v1/rounds/{number}/update",
        data=body,
        content_type="application/octet-stream",
        **headers,
    )


def test_uploads_are_limited_per_bank_with_a_429_that_says_when_to_retry(
    client, ckks, open_round, bank_alpha, bank_beta, upload_rate
):
    body, _ = encrypted_update(ckks, open_round.vector_length)
    headers = upload_headers(bank_alpha, open_round.number, body)
    statuses = [_put(client, open_round.number, body, headers).status_code for _ in range(4)]
    # The first is stored, the retries are answered idempotently, the fourth is throttled.
    assert statuses == [201, 200, 200, 429]
    refused = _put(client, open_round.number, body, headers)
    assert refused.status_code == 429
    assert "too many uploads from this bank" in refused.json()["message"]
    assert int(refused["Retry-After"]) > 0
    # Another bank has its own allowance.
    other, _ = encrypted_update(ckks, open_round.vector_length, seed=3)
    assert (
        _put(client, open_round.number, other, upload_headers(bank_beta, open_round.number, other))
    ).status_code == 201


def test_the_upload_counters_live_in_a_cache_every_worker_shares():
    # A per-process cache (LocMemCache) would give each gunicorn worker its own allowance.
    assert isinstance(caches["throttle"], DatabaseCache)
    assert BankUploadThrottle().cache is caches["throttle"]


def test_status_polls_are_not_throttled(client, open_round, bank_alpha, upload_rate):
    for _ in range(10):
        assert client.get("/api/v1/rounds/current", **bank_alpha.auth()).status_code == 200


def test_the_upload_rate_comes_from_the_environment(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from consortium.settings import env_rate

    monkeypatch.setenv("CONSORTIUM_UPLOAD_RATE", "10/h")
    assert env_rate("CONSORTIUM_UPLOAD_RATE", "60/min") == "10/h"
    for bad in ("lots", "0/min", "10/fortnight", "-1/s"):
        monkeypatch.setenv("CONSORTIUM_UPLOAD_RATE", bad)
        with pytest.raises(ImproperlyConfigured, match="60/min"):
            env_rate("CONSORTIUM_UPLOAD_RATE", "60/min")


# --- sign-in --------------------------------------------------------------------------


def _basic(password: str, username: str = "olivia") -> dict[str, Any]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


@pytest.fixture
def failure_limit(settings: Any) -> int:
    return int(settings.AXES_FAILURE_LIMIT)


def _portal_login(client: Client, password: str, **extra: Any) -> Any:
    return client.post("/login/", {"username": "olivia", "password": password}, **extra)


def _admin_login(client: Client, password: str, **extra: Any) -> Any:
    return client.post("/admin/login/", {"username": "olivia", "password": password}, **extra)


@pytest.mark.parametrize("login", [_portal_login, _admin_login], ids=["portal", "admin"])
def test_repeated_failed_sign_ins_lock_the_username_out_even_with_the_right_password(
    client, operator, failure_limit, login
):
    for _ in range(failure_limit - 1):
        assert login(client, "wrong-password").status_code == 200  # the form again
    assert login(client, "wrong-password").status_code == 429  # the failure that locks
    locked = login(client, "operator-password-1")
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize("login", [_portal_login, _admin_login], ids=["portal", "admin"])
def test_a_right_password_before_the_limit_signs_in(client, operator, failure_limit, login):
    operator.is_staff = True  # the admin site admits staff only
    operator.save()
    for _ in range(failure_limit - 1):
        login(client, "wrong-password")
    response = login(client, "operator-password-1")
    assert response.status_code == 302
    assert "_auth_user_id" in client.session


def test_api_basic_auth_shares_the_lock_out_and_says_so_with_429(client, operator, failure_limit):
    for _ in range(failure_limit - 1):
        assert client.get("/api/v1/banks/", **_basic("wrong")).status_code == 401
    assert client.get("/api/v1/banks/", **_basic("wrong")).status_code == 429
    locked = client.get("/api/v1/banks/", **_basic("operator-password-1"))
    assert locked.status_code == 429
    assert "too many failed sign-ins" in locked.json()["message"]
    # The web sign-in is locked too: one counter per username and address.
    assert _portal_login(client, "operator-password-1").status_code == 429


def test_the_lock_out_is_per_username_and_address(client, operator, failure_limit):
    from django.contrib.auth.models import Group, User

    # An auditor: an account with no role would be refused (403) whether locked or not.
    oscar = User.objects.create_user("oscar", password="other-password-1")
    oscar.groups.add(Group.objects.get_or_create(name="auditors")[0])
    for _ in range(failure_limit):
        client.get("/api/v1/banks/", **_basic("wrong"))
    assert client.get("/api/v1/banks/", **_basic("operator-password-1")).status_code == 429
    # Another user from the same address, and the same user from elsewhere, are not locked
    # (so one attacker cannot lock every operator out from one address).
    other_user = client.get("/api/v1/rounds/", **_basic("other-password-1", "oscar"))
    assert other_user.status_code == 200
    elsewhere = client.get(
        "/api/v1/banks/", REMOTE_ADDR="10.1.2.3", **_basic("operator-password-1")
    )
    assert elsewhere.status_code == 200


def test_a_worker_busy_with_uploads_answers_429_and_keeps_nothing(
    client, ckks, open_round, bank_alpha, monkeypatch, settings
):
    import threading

    from consortium.rounds import views

    monkeypatch.setattr(views, "_upload_slots", threading.BoundedSemaphore(1))
    views._upload_slots.acquire()  # another upload holds this worker's only slot
    body, _ = encrypted_update(ckks, open_round.vector_length)
    headers = upload_headers(bank_alpha, open_round.number, body)
    busy = _put(client, open_round.number, body, headers)
    assert busy.status_code == 429
    assert "busy with other uploads" in busy.json()["message"]
    assert busy["Retry-After"] == "2"
    assert open_round.submissions.count() == 0
    tmp = settings.BLOB_DIR / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir())
    views._upload_slots.release()
    assert _put(client, open_round.number, body, headers).status_code == 201


def test_failures_for_the_operator_from_elsewhere_do_not_lock_the_operator_out(
    client, operator, failure_limit
):
    for _ in range(failure_limit + 2):
        client.get("/api/v1/banks/", REMOTE_ADDR="10.0.0.9", **_basic("wrong"))
    assert (
        client.get("/api/v1/banks/", REMOTE_ADDR="10.0.0.9", **_basic("operator-password-1"))
    ).status_code == 429
    # The operator's own address: both the API and the web sign-in still let them in.
    ok = client.get("/api/v1/banks/", REMOTE_ADDR="127.0.0.1", **_basic("operator-password-1"))
    assert ok.status_code == 200
    assert _portal_login(client, "operator-password-1", REMOTE_ADDR="127.0.0.1").status_code == 302


@pytest.fixture
def source_limit(settings: Any) -> int:
    settings.SIGN_IN_FAILURES_PER_MINUTE = 4
    return 4


@pytest.fixture
def password_checks(monkeypatch) -> list[str]:
    """Usernames whose password Django's backend checked (hashed), in order."""
    from django.contrib.auth.backends import ModelBackend

    checked: list[str] = []
    original = ModelBackend.authenticate

    def counting(self: Any, request: Any, username: Any = None, **kwargs: Any) -> Any:
        checked.append(str(username))
        return original(self, request, username=username, **kwargs)

    monkeypatch.setattr(ModelBackend, "authenticate", counting)
    return checked


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_a_source_failing_with_many_usernames_is_refused_before_any_password_is_checked(
    client, operator, source_limit, password_checks, path
):
    # A different username each time: axes' per-username lock-out never trips.
    for i in range(source_limit):
        assert client.post(path, {"username": f"guess{i}", "password": "x"}).status_code == 200
    assert len(password_checks) == source_limit
    refused = client.post(path, {"username": "olivia", "password": "operator-password-1"})
    assert refused.status_code == 429
    assert "too many failed sign-ins from this address" in refused.content.decode()
    assert refused["Retry-After"] == "60"
    assert len(password_checks) == source_limit  # refused unread: no password hashed
    assert "_auth_user_id" not in client.session


def test_api_basic_auth_from_a_failing_source_gets_a_429_in_the_error_shape(
    client, operator, source_limit, password_checks
):
    for i in range(source_limit):
        client.get("/api/v1/banks/", **_basic("wrong", f"guess{i}"))
    refused = client.get("/api/v1/banks/", **_basic("operator-password-1"))
    assert refused.status_code == 429
    assert refused.json() == {
        "message": "too many failed sign-ins from this address (limit 4 a minute); "
        "try again in a minute",
        "extra": {"limit": 4},
    }
    assert len(password_checks) == source_limit
    # Another address is not affected.
    other = client.get("/api/v1/banks/", REMOTE_ADDR="10.1.2.3", **_basic("operator-password-1"))
    assert other.status_code == 200


def test_failed_sign_ins_land_in_a_bounded_security_log_and_not_the_chain(
    client, operator, settings
):
    from audit.models import AuditEvent
    from consortium.api.models import SignInFailure

    settings.SECURITY_LOG_MAX_ROWS = 10
    before = AuditEvent.objects.count()
    for i in range(15):
        client.get("/api/v1/banks/", REMOTE_ADDR=f"10.0.1.{i}", **_basic("wrong", f"user{i}"))
    client.get("/api/v1/banks/", REMOTE_ADDR="10.0.1.14", **_basic("wrong", "user14"))
    assert AuditEvent.objects.count() == before
    rows = list(SignInFailure.objects.order_by("pk"))
    assert len(rows) == 10  # the newest ten; older ones were pruned on write
    assert [r.username for r in rows] == [f"user{i}" for i in range(5, 15)]
    assert rows[-1].count == 2  # the same source, username and minute: one row, counted


def test_failures_either_side_of_a_minute_boundary_still_add_up():
    from datetime import UTC, datetime, timedelta

    from consortium.api.services import sign_in_failure_record, sign_in_failures_count

    boundary = datetime(2026, 12, 2, 7, 25, tzinfo=UTC)
    source = "10.9.9.9"
    for i in range(3):
        sign_in_failure_record(
            source=source, username=f"u{i}", path="/login/", now=boundary - timedelta(seconds=1)
        )
    sign_in_failure_record(source=source, username="u3", path="/login/", now=boundary)
    # A fixed one-minute window would see 1 here and let the burst go on.
    assert sign_in_failures_count(source=source, now=boundary + timedelta(seconds=1)) == 4
    # Two minutes on, the old failures no longer count; another source never did.
    assert sign_in_failures_count(source=source, now=boundary + timedelta(minutes=2)) == 0
    assert sign_in_failures_count(source="10.9.9.8", now=boundary) == 0

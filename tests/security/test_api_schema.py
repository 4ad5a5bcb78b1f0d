"""Schemathesis against the live portal's own OpenAPI schema: no 5xx, responses as documented.

Two passes over every operation, as a bank node (its bearer credential) and as an operator
(a web-portal session, with its CSRF token), each through the coverage phase (boundary and
invalid values for every parameter and field) and the fuzzing phase. Bounded by
CONSORTIUM_SCHEMATHESIS_EXAMPLES (default 10 per operation); CONSORTIUM_SCHEMATHESIS_SEED
fixes the run (default 1) so CI failures reproduce.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.faults.conftest import PgServer, Portal, federate

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
EXAMPLES = os.environ.get("CONSORTIUM_SCHEMATHESIS_EXAMPLES", "10")
SEED = os.environ.get("CONSORTIUM_SCHEMATHESIS_SEED", "1")


@pytest.fixture(scope="module")
def portal(tmp_path_factory, ckks):
    server = PgServer()
    var_dir = tmp_path_factory.mktemp("schema-portal")
    database_url = server.create_database()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=database_url,
        CONSORTIUM_VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="consortium.settings",
        # Let the upload path be exercised rather than throttled after 60 requests.
        CONSORTIUM_UPLOAD_RATE="100000/min",
    )
    live = Portal(database_url, var_dir, env, secrets.token_urlsafe(16))
    assert live.manage("migrate", "--noinput", "-v", "0").returncode == 0
    (var_dir / "pw").write_text(live.operator_password)
    made = live.manage("create_operator", "operator", "--password-file", str(var_dir / "pw"))
    assert made.returncode == 0, made.stderr
    live.start_web()
    live.start_scheduler()
    members = federate(live, ckks, ["alpha", "beta", "gamma"], min_banks=3)
    yield live, members
    live.close()
    server.close()


def _operator_session(live: Portal) -> list[str]:
    """Sign in through the web portal once; a session is what an operator's browser holds
    (basic auth would pay PBKDF2's deliberate cost on every one of ~1000 requests)."""
    session = requests.Session()
    session.get(f"{live.url()}/login/", timeout=30)
    token = session.cookies["csrftoken"]
    answer = session.post(
        f"{live.url()}/login/",
        data={
            "username": "operator",
            "password": live.operator_password,
            "csrfmiddlewaretoken": token,
        },
        allow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 302, answer.text[:500]
    cookies = f"sessionid={session.cookies['sessionid']}; csrftoken={session.cookies['csrftoken']}"
    return ["-H", f"Cookie: {cookies}", "-H", f"X-CSRFToken: {session.cookies['csrftoken']}"]


def _schemathesis(live: Portal, auth: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{live.url()}/api/schema/",
            "--url",
            live.url(),
            *auth,
            "--checks",
            "not_a_server_error,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            EXAMPLES,
            "--seed",
            SEED,
            "--generation-database",
            "none",
            "--request-timeout",
            "60",
            "--no-color",
        ],
        cwd=cwd,  # whatever it caches stays in the test's tmp directory
        capture_output=True,
        text=True,
        timeout=540,
    )


@pytest.mark.parametrize("caller", ["bank", "operator"])
def test_every_operation_answers_without_a_server_error_and_as_its_schema_says(
    portal, tmp_path, caller
):
    live, members = portal
    if caller == "bank":
        auth = ["-H", f"Authorization: Bearer {members['alpha'].credential}"]
    else:
        auth = _operator_session(live)
    result = _schemathesis(live, auth, tmp_path)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "generated" in result.stdout  # it did test something

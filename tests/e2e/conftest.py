"""A live portal (gunicorn + scheduler) on a fresh database, for multi-process tests."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from simulation.processes import PortalOptions, free_port, portal_env, running_portal

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LivePortal:
    url: str
    env: dict[str, str]
    var_dir: Path
    operator_password: str
    database_url: str | None
    # Prometheus: the web tier's /metrics wants this Bearer token; the scheduler serves
    # its own /metrics (no token) at this URL.
    metrics_token: str = ""
    scheduler_metrics_url: str = ""


def _fresh_database(base_url: str | None) -> tuple[str | None, str | None]:
    """On PostgreSQL, a new database beside the test one; on SQLite, none (a file)."""
    if not base_url or not base_url.startswith("postgres"):
        return None, None
    import psycopg2

    name = f"e2e_{secrets.token_hex(4)}"
    admin = base_url.rsplit("/", 1)[0] + "/postgres"
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return base_url.rsplit("/", 1)[0] + f"/{name}", name


@pytest.fixture(scope="module")
def live_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePortal]:
    var_dir = tmp_path_factory.mktemp("portal")
    database_url, _ = _fresh_database(os.environ.get("DATABASE_URL"))
    env = portal_env(
        var_dir,
        database_url=database_url,
        CONSORTIUM_METRICS_TOKEN=secrets.token_urlsafe(16),
        CONSORTIUM_SCHEDULER_METRICS_ADDR="127.0.0.1",
        # Walk the audit chain every few seconds, so that tests see fresh results.
        CONSORTIUM_AUDIT_VERIFY_INTERVAL="5",
    )
    password = secrets.token_urlsafe(16)
    scheduler_port = free_port()
    options = PortalOptions(
        scheduler_metrics_port=scheduler_port, multiproc_dir=var_dir / "prometheus"
    )
    with running_portal(env, password, options) as portal:
        yield LivePortal(
            portal.url,
            env,
            var_dir,
            password,
            database_url,
            metrics_token=env["CONSORTIUM_METRICS_TOKEN"],
            scheduler_metrics_url=f"http://127.0.0.1:{scheduler_port}/metrics",
        )


def until(check: Callable[[], Any], timeout: float = 240, every: float = 0.5) -> Any:
    """Poll ``check`` until it returns something truthy (a SQL row list gives its first
    value); fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value[0][0] if isinstance(value, list) and value and value[0] else value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {check}")

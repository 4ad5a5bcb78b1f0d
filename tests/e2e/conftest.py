"""A live portal (gunicorn + scheduler) on a fresh database, for multi-process tests."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        {
            "CONSORTIUM_VAR_DIR": str(var_dir),
            "DJANGO_SETTINGS_MODULE": "consortium.settings",
            "PYTHONUNBUFFERED": "1",
            "CONSORTIUM_METRICS_TOKEN": secrets.token_urlsafe(16),
            "CONSORTIUM_SCHEDULER_METRICS_ADDR": "127.0.0.1",
            # Walk the audit chain every few seconds, so that tests see fresh results.
            "CONSORTIUM_AUDIT_VERIFY_INTERVAL": "5",
        }
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    py = sys.executable
    subprocess.run(
        [py, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, cwd=ROOT, check=True
    )
    password = secrets.token_urlsafe(16)
    (var_dir / "pw").write_text(password)
    subprocess.run(
        [py, "manage.py", "create_operator", "operator", "--password-file", str(var_dir / "pw")],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    port, scheduler_port = _free_port(), _free_port()
    # gunicorn's workers add up their metrics through files here (the scheduler keeps its own).
    web_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(var_dir / "prometheus")}
    logs = [open(var_dir / name, "wb") for name in ("gunicorn.log", "scheduler.log")]
    procs = [
        subprocess.Popen(
            [
                py,
                "-m",
                "gunicorn",
                "-c",
                "consortium/gunicorn.conf.py",
                "consortium.wsgi",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--timeout",
                "120",
            ],
            env=web_env,
            cwd=ROOT,
            stdout=logs[0],
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [
                py,
                "manage.py",
                "run_scheduler",
                "--interval",
                "1",
                "--metrics-port",
                str(scheduler_port),
            ],
            env=env,
            cwd=ROOT,
            stdout=logs[1],
            stderr=subprocess.STDOUT,
        ),
    ]
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError((var_dir / "gunicorn.log").read_text())
        time.sleep(0.3)
    try:
        yield LivePortal(
            url,
            env,
            var_dir,
            password,
            database_url,
            metrics_token=env["CONSORTIUM_METRICS_TOKEN"],
            scheduler_metrics_url=f"http://127.0.0.1:{scheduler_port}/metrics",
        )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for handle in logs:
            handle.close()

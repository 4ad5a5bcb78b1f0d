"""Real processes to break: a private PostgreSQL server, gunicorn, schedulers, bank clients.

The fault tests share one consortium (a database on a PostgreSQL server of their own —
initdb takes under a second — with its blob store, web tier and scheduler), so that they
can stop, kill and restart whatever they like without touching the server
`scripts/with-postgres.sh` runs for the rest of the suite, and pay for start-up once.
Each test takes the next round, and leaves every process running as it found it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bank_node.portal_client import BankClient, OperatorClient
from he.signing import public_key_b64, sign, update_message
from protocol import RoundInfo
from simulation.processes import (
    PY,
    ROOT,
    free_port,
    portal_env,
    prepare_database,
    scheduler_argv,
    wait_ready,
    web_argv,
)
from tests.conftest import PARAMS, Ckks, encrypted_update

# A one-hidden-layer model: one ciphertext chunk (~65 KB) per update keeps tests quick.
SMALL_MODEL = {"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60, every: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (requests.RequestException, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


# --- PostgreSQL ----------------------------------------------------------------------


def _pgbin() -> Path | None:
    if os.environ.get("PGBIN"):
        return Path(os.environ["PGBIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parent.parent.name
    )
    return found[-1].parent if found else None


class PgServer:
    """A throwaway PostgreSQL server that a test may stop and start again on the same port."""

    def __init__(self) -> None:
        pgbin = _pgbin()
        if pgbin is None:
            pytest.skip("no PostgreSQL server binaries (run: make system-deps)")
        self.bin = pgbin
        self.as_pg: list[str] = []
        if os.geteuid() == 0:
            if subprocess.run(["id", "-u", "postgres"], capture_output=True).returncode != 0:
                pytest.skip("running as root without a `postgres` user for initdb")
            self.as_pg = ["runuser", "-u", "postgres", "--"]
        self.dir = Path(tempfile.mkdtemp(prefix="consortium-faults-pg-", dir="/tmp"))
        if self.as_pg:
            shutil.chown(self.dir, "postgres")
        self.port = free_port()
        subprocess.run(
            [*self.as_pg, str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U",
             "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"],
            check=True, capture_output=True,
        )  # fmt: skip
        self.start()

    @property
    def admin_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [*self.as_pg, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l",
             str(self.dir / "server.log"), "-w", "-t", "30", "-o", opts, "start"],
            check=True, capture_output=True,
        )  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        subprocess.run(
            [*self.as_pg, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", mode,
             "-w", "stop"],
            check=True, capture_output=True,
        )  # fmt: skip

    def create_database(self) -> str:
        import psycopg2

        name = f"faults_{secrets.token_hex(4)}"
        conn = psycopg2.connect(self.admin_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        subprocess.run(
            [*self.as_pg, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m",
             "immediate", "-w", "stop"],
            capture_output=True,
        )  # fmt: skip
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer()
    yield server
    server.close()


def query(database_url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the portal's database directly: what is really stored, not what the API says."""
    import psycopg2

    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


# --- the portal's processes ----------------------------------------------------------


@dataclass
class Portal:
    """One database and blob store, any number of web replicas and schedulers on them."""

    database_url: str
    var_dir: Path
    env: dict[str, str]
    operator_password: str
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    def url(self, name: str = "web") -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def _spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None) -> None:
        log = open(self.var_dir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(
            argv,
            env={**self.env, **(extra_env or {})},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill takes the workers too
        )
        log.close()

    def start_web(self, name: str = "web", workers: int = 2, **extra_env: str) -> str:
        port = self.ports.setdefault(name, free_port())
        argv = web_argv(port, workers=workers, extra=("--graceful-timeout", "5"))
        # Each replica's own metrics directory: a SIGKILLed master cannot remove a temporary one.
        multiproc = {"PROMETHEUS_MULTIPROC_DIR": str(self.var_dir / f"prometheus-{name}")}
        self._spawn(name, argv, {**multiproc, **extra_env})
        wait_ready(self.url(name), proc=self.procs[name], log=self.var_dir / f"{name}.log")
        return self.url(name)

    def start_scheduler(self, name: str = "scheduler", interval: float = 0.5, **extra_env: str):
        self._spawn(name, scheduler_argv(interval), extra_env)

    def kill(self, name: str) -> None:
        """SIGKILL the process group: no clean-up handler, no graceful shutdown."""
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=20)

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)

    def log(self, name: str) -> str:
        path = self.var_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PY, "manage.py", *args], env=self.env, cwd=ROOT, capture_output=True, text=True
        )

    def operator(self, name: str = "web") -> OperatorClient:
        return OperatorClient(self.url(name), "operator", self.operator_password, max_retries=0)

    def blobs(self, kind: str, number: int | None = None) -> list[Path]:
        """Stored ``uploads`` or ``aggregates``; uploads of round ``number`` only if given."""
        root = self.var_dir / "blobs" / kind
        if number is not None:
            root = root / f"round-{number:05d}"
        return sorted(root.rglob("*.ckks"))

    def temp_files(self) -> list[Path]:
        return sorted((self.var_dir / "blobs" / "tmp").glob("*.part"))

    def audit_count(self, action: str) -> int:
        return int(
            query(self.database_url, "SELECT count(*) FROM audit_auditevent WHERE action = %s",
                  action)[0][0]
        )  # fmt: skip

    def round_row(self, number: int) -> dict[str, Any]:
        rows = query(
            self.database_url,
            "SELECT state, deadline_at, closed_at, aggregate_digest, aggregate_blob, manifest "
            "FROM rounds_round WHERE number = %s",
            number,
        )
        keys = ("state", "deadline_at", "closed_at", "aggregate_digest", "aggregate_blob")
        return {**dict(zip(keys, rows[0][:5], strict=True)), "manifest": rows[0][5]}

    def submitted(self, number: int) -> dict[str, str]:
        """bank slug -> digest of every accepted submission of round ``number``."""
        rows = query(
            self.database_url,
            "SELECT b.slug, s.digest FROM rounds_submission s JOIN members_bank b "
            "ON b.id = s.bank_id JOIN rounds_round r ON r.id = s.round_id WHERE r.number = %s",
            number,
        )
        return dict(rows)

    def close(self) -> None:
        # The database and blobs are thrown away: no need for a graceful stop.
        for name in list(self.procs):
            self.kill(name)


@pytest.fixture(scope="session")
def portal_factory(
    pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Portal]]:
    made: list[Portal] = []

    def make(server: PgServer | None = None, **settings_env: str) -> Portal:
        var_dir = tmp_path_factory.mktemp("portal")
        database_url = (server or pg_server).create_database()
        env = portal_env(
            var_dir, database_url=database_url, CONSORTIUM_LOG_LEVEL="INFO", **settings_env
        )
        password = secrets.token_urlsafe(16)
        portal = Portal(database_url, var_dir, env, password)
        prepare_database(env, password)
        made.append(portal)
        return portal

    yield make
    for portal in made:
        portal.close()


# --- the consortium on top: key epoch, policy, banks ---------------------------------


@dataclass
class Member:
    slug: str
    credential: str
    key: Ed25519PrivateKey

    def client(self, url: str, **kwargs: Any) -> BankClient:
        return BankClient(url, self.credential, **kwargs)

    def signed(self, number: int, body: bytes) -> tuple[str, str]:
        digest = hashlib.sha256(body).hexdigest()
        return digest, sign(self.key, update_message(number, self.slug, digest))


def federate(portal: Portal, ckks: Ckks, slugs: list[str], **policy: Any) -> dict[str, Member]:
    """Register the key epoch, the banks (with signing keys) and an active policy."""
    op = portal.operator()
    op.key_epoch_register(base64.b64encode(ckks.public_bytes).decode(), PARAMS.to_dict())
    members = {}
    for slug in slugs:
        credential = op.bank_create(slug)["credential"]
        key = Ed25519PrivateKey.generate()
        BankClient(portal.url(), credential).register_signing_key(public_key_b64(key))
        members[slug] = Member(slug, credential, key)
    fields = {
        "name": "faults",
        "active": True,
        "min_banks": 3,
        "deadline_seconds": 120,
        "max_rounds": 1,
        "normalize_features": False,
        "model_spec": SMALL_MODEL,
        "ckks_params": PARAMS.to_dict(),
        # These banks upload hand-made v1 containers with no roster behind them: the fault
        # tests exercise the portal's storage and scheduler, not the v2 protocol (whose
        # failure cases are tests/consortium/secagg*, tests/e2e/test_secure_aggregation.py).
        "secure_aggregation": "v1",
        **policy,
    }
    op.policy_create(**fields)
    return members


@pytest.fixture(scope="session")
def consortium(
    portal_factory: Callable[..., Portal], ckks: Ckks
) -> tuple[Portal, dict[str, Member]]:
    """The shared portal: three banks, all of which submit in every round unless a test
    says otherwise, so a round closes as soon as its last update arrives."""
    portal = portal_factory()
    portal.start_web()
    portal.start_scheduler()
    members = federate(portal, ckks, ["alpha", "beta", "gamma"], min_banks=3, max_rounds=50)
    return portal, members


_used_rounds: set[int] = set()


def next_round(portal: Portal, member: Member) -> RoundInfo:
    """Wait for an open round that no earlier test has used, and claim it."""
    client = member.client(portal.url(), max_retries=0)

    def fresh() -> Any:
        rnd = client.current_round()
        ok = rnd and rnd.state == "open" and rnd.number not in _used_rounds
        return rnd if ok else None

    rnd = wait_for("a fresh round to open", fresh, timeout=60)
    _used_rounds.add(rnd.number)
    return rnd


def open_round(portal: Portal, member: Member, number: int | None = None) -> RoundInfo:
    """Wait until the scheduler has a round open (round ``number`` if given)."""
    client = member.client(portal.url(), max_retries=0)

    def ready() -> Any:
        rnd = client.current_round()
        if rnd and rnd.state == "open" and (number is None or rnd.number == number):
            return rnd
        return None

    return wait_for("a round to open", ready, timeout=60)


def write_update(
    ckks: Ckks, rnd: RoundInfo, member: Member, out_dir: Path, seed: int
) -> tuple[Path, str, str, Any]:
    """Encrypt and sign a fresh update for ``member``; returns path, digest, signature, plain."""
    body, plain = encrypted_update(ckks, rnd.vector_length, seed=seed)
    path = out_dir / f"{member.slug}-{rnd.number}-{seed}.ckks"
    path.write_bytes(body)
    digest, signature = member.signed(rnd.number, body)
    return path, digest, signature, plain


HALF_SENDER = r"""
import socket, sys, time
host, port, path, body_file, credential, digest, signature = sys.argv[1:8]
body = open(body_file, "rb").read()
s = socket.create_connection((host, int(port)))
head = (
    f"PUT {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {credential}\r\n"
    f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
    f"X-Update-Digest: {digest}\r\nX-Update-Signature: {signature}\r\n\r\n"
)
s.sendall(head.encode() + body[: len(body) // 2])
print("half sent", flush=True)
time.sleep(600)
"""


def start_half_upload(
    url: str, member: Member, number: int, path: Path, digest: str, signature: str
) -> subprocess.Popen:
    """A node process that sends headers and half the body, then stalls (to be killed)."""
    host, port = url.removeprefix("http://").split(":")
    proc = subprocess.Popen(
        [PY, "-c", HALF_SENDER, host, port, f"/api/v1/rounds/{number}/update", str(path),
         member.credential, digest, signature],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "half sent"
    return proc

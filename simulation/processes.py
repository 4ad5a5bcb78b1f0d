"""Start the portal's processes (migrate, gunicorn, scheduler) and stop them all on exit.

The demo, the end-to-end and fault tests and the load benchmark all run the portal the
way production does: ``manage.py migrate``, gunicorn with ``-c consortium/gunicorn.conf.py``
and ``manage.py run_scheduler``. This module is the one place that knows those command
lines, the environment they need and how to tell that the portal is ready.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
OPERATOR = "operator"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def portal_env(
    var_dir: Path, *, database_url: str | None = None, **settings: str
) -> dict[str, str]:
    """This process's environment for the portal: its own var dir and database, ``settings``.

    Any inherited ``DATABASE_URL*`` or ``PG*`` variable is dropped, so that without
    ``database_url`` the portal uses SQLite under ``var_dir`` and never the caller's database.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    env.update(
        {
            "CONSORTIUM_VAR_DIR": str(var_dir),
            "DJANGO_SETTINGS_MODULE": "consortium.settings",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    env.update(settings)
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py args`` to completion; raise with its output if it fails."""
    result = subprocess.run(
        [PY, "manage.py", *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result


def prepare_database(env: dict[str, str], password: str) -> None:
    """Migrate the portal's database and create the operator with ``password``."""
    manage(env, "migrate", "--noinput", "-v", "0")
    password_file = Path(env["CONSORTIUM_VAR_DIR"]) / "operator.password"
    password_file.write_text(password)
    password_file.chmod(0o600)
    manage(env, "create_operator", OPERATOR, "--password-file", str(password_file))


def web_argv(
    port: int, *, workers: int = 2, timeout: int = 120, extra: Sequence[str] = ()
) -> list[str]:
    """gunicorn serving the portal on 127.0.0.1:``port`` with the multiprocess-metrics config."""
    return [
        *(PY, "-m", "gunicorn", "-c", "consortium/gunicorn.conf.py", "consortium.wsgi"),
        *("--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--timeout", str(timeout)),
        *extra,
    ]


def scheduler_argv(interval: float = 1, metrics_port: int | None = None) -> list[str]:
    """``manage.py run_scheduler``; ``metrics_port`` serves its own /metrics and probes."""
    argv = [PY, "manage.py", "run_scheduler", "--interval", str(interval)]
    if metrics_port is not None:
        argv += ["--metrics-port", str(metrics_port)]
    return argv


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-3000:] if log and log.exists() else ""


def wait_ready(
    url: str,
    *,
    timeout: float = 60,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll ``url``/readyz until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up within {timeout:.0f}s:\n{_tail(log)}")
        time.sleep(0.3)


@dataclass
class Processes:
    """Children we started; all are stopped on exit, whatever happens."""

    stop_timeout: float = 15
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log: Path,
        *,
        new_session: bool = False,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in the repository with output to ``log`` (appended).

        ``new_session`` gives the child its own process group, so that a signal to the
        group reaches gunicorn's workers too.
        """
        with open(log, "ab") as handle:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=new_session,
            )
        self.children.append((name, proc))
        return proc

    def stop_all(self) -> None:
        """SIGTERM every child still running, then SIGKILL those that outlive the timeout."""
        for _, proc in self.children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.children:
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass(frozen=True)
class PortalOptions:
    """How to run the web tier and the scheduler."""

    workers: int = 2
    timeout: int = 120
    web_extra: tuple[str, ...] = ()
    scheduler_interval: float = 1
    scheduler_metrics_port: int | None = None
    # gunicorn's workers add up their Prometheus metrics through files here (the scheduler,
    # a process of its own, keeps its own); None: gunicorn.conf.py makes a temporary one.
    multiproc_dir: Path | None = None
    new_session: bool = False
    ready_timeout: float = 60


@dataclass(frozen=True)
class RunningPortal:
    """A started portal: its URL and its two processes."""

    url: str
    web: subprocess.Popen[bytes]
    scheduler: subprocess.Popen[bytes]


def start_portal(
    procs: Processes, env: dict[str, str], port: int, options: PortalOptions
) -> RunningPortal:
    """Start gunicorn and the scheduler on a prepared database; return once it is ready."""
    var_dir = Path(env["CONSORTIUM_VAR_DIR"])
    web_env = dict(env)
    if options.multiproc_dir is not None:
        web_env["PROMETHEUS_MULTIPROC_DIR"] = str(options.multiproc_dir)
    argv = web_argv(port, workers=options.workers, timeout=options.timeout, extra=options.web_extra)
    log = var_dir / "gunicorn.log"
    web = procs.start("portal", argv, web_env, log, new_session=options.new_session)
    scheduler = procs.start(
        "scheduler",
        scheduler_argv(options.scheduler_interval, options.scheduler_metrics_port),
        env,
        var_dir / "scheduler.log",
        new_session=options.new_session,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, timeout=options.ready_timeout, proc=web, log=log)
    return RunningPortal(url, web, scheduler)


@contextmanager
def running_portal(
    env: dict[str, str], password: str, options: PortalOptions | None = None
) -> Iterator[RunningPortal]:
    """Migrate, create the operator, start the portal; stop its processes on exit."""
    Path(env["CONSORTIUM_VAR_DIR"]).mkdir(parents=True, exist_ok=True)
    prepare_database(env, password)
    procs = Processes(stop_timeout=20)
    try:
        yield start_portal(procs, env, free_port(), options or PortalOptions())
    finally:
        procs.stop_all()

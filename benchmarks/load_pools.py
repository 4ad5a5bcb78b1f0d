"""The load benchmark's portal: one database, its gunicorn pools and the scheduler.

A layout says which pool answers which request, as the portal chart deploys it:

- ``one``: one pool answers everything (the chart with ``uploads.enabled`` false);
- ``split``: a pool for reads and a niced pool for uploads (the chart's ``uploads``
  Deployment, which the Ingress sends ``PUT /api/v1/rounds/<n>/update`` and the other
  bulk paths to); the benchmark polls the first and uploads to the second, as the
  Ingress would route them.

Every pool serves the same database and blob store, so the layouts can take turns within
one run, on one machine in one state.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from simulation.processes import (
    PortalOptions,
    Processes,
    free_port,
    portal_env,
    prepare_database,
    start_portal,
    wait_ready,
    web_argv,
)

LAYOUTS = ("one", "split")
# Where gunicorn's workers keep their metric files: in memory, as the chart's emptyDir of
# medium Memory does (on disk they share the journal with 50 fsynced uploads and stall).
MEMORY = Path("/dev/shm")


@dataclass(frozen=True)
class PoolSpec:
    """One gunicorn pool: workers, threads each, and the workers' niceness."""

    workers: int
    threads: int
    niceness: int | str = 0  # 0-19, or "idle" (SCHED_IDLE): CONSORTIUM_WEB_NICENESS

    def describe(self) -> str:
        nice = f", nice {self.niceness}" if self.niceness else ""
        return f"{self.workers} workers x {self.threads} threads{nice}"


@dataclass
class Pool:
    """A running gunicorn master and where it answers."""

    spec: PoolSpec
    url: str
    proc: subprocess.Popen[bytes]
    metrics_dir: Path

    def worker_pids(self) -> list[int]:
        pid = self.proc.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return sorted(int(p) for p in children.split())

    def peak_rss_mb(self) -> dict[int, float]:
        """VmHWM (peak resident set) of every worker, in MB."""
        out = {}
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    out[pid] = int(line.split()[1]) / 1024
        return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and its live descendants.

    Unlike latencies, this does not depend on what else the machine runs: it says what
    a burst costs each part (web workers, validation helpers, clients).
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        todo += [int(c) for c in children.split()]
    return total


def gunicorn_extra(spec: PoolSpec) -> tuple[str, ...]:
    extra = ["--backlog", "2048"]
    if spec.threads > 1:
        extra += ["--worker-class", "gthread", "--threads", str(spec.threads)]
    return tuple(extra)


def metrics_dir() -> Path:
    """A fresh directory for one pool's metric files (each master empties its own at start)."""
    return Path(
        tempfile.mkdtemp(prefix="consortium-load-metrics-", dir=MEMORY if MEMORY.is_dir() else None)
    )


class Portal:
    """The scheduler and the pools the layouts need, on a fresh database and blob store.

    ``pools["all"]`` (layout ``one``) also takes the set-up's requests; ``pools["reads"]``
    and ``pools["uploads"]`` exist when layout ``split`` is asked for.
    """

    def __init__(
        self,
        database_url: str,
        layouts: tuple[str, ...],
        one: PoolSpec,
        split: tuple[PoolSpec, PoolSpec],
    ) -> None:
        self.var = Path(tempfile.mkdtemp(prefix="consortium-load-"))
        self.password = secrets.token_urlsafe(16)
        self.env = portal_env(
            self.var,
            database_url=database_url,
            CONSORTIUM_LOG_LEVEL="WARNING",
            DATABASE_CONN_MAX_AGE="60",
        )
        prepare_database(self.env, self.password)
        self.procs = Processes(stop_timeout=30)
        self.pools: dict[str, Pool] = {}
        try:
            self._start("all", one, scheduler=True)
            if "split" in layouts:
                self._start("reads", split[0])
                self._start("uploads", split[1])
        except RuntimeError as exc:
            self.close()
            raise SystemExit(str(exc)) from exc

    @property
    def url(self) -> str:
        return self.pools["all"].url

    def routes(self, layout: str) -> tuple[Pool, Pool]:
        """The pool the poller asks and the pool the banks upload to, under ``layout``."""
        if layout == "split":
            return self.pools["reads"], self.pools["uploads"]
        return self.pools["all"], self.pools["all"]

    def _start(self, name: str, spec: PoolSpec, *, scheduler: bool = False) -> None:
        directory = metrics_dir()
        env = dict(self.env, CONSORTIUM_WEB_NICENESS=str(spec.niceness))
        port = free_port()
        options = PortalOptions(
            workers=spec.workers,
            timeout=300,
            web_extra=gunicorn_extra(spec),
            multiproc_dir=directory,
            new_session=True,
        )
        if scheduler:
            running = start_portal(self.procs, env, port, options)
            self.pools[name] = Pool(spec, running.url, running.web, directory)
            return
        argv = web_argv(port, workers=spec.workers, timeout=300, extra=options.web_extra)
        log = self.var / f"gunicorn-{name}.log"
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
        proc = self.procs.start(name, argv, env, log, new_session=True)
        url = f"http://127.0.0.1:{port}"
        self.pools[name] = Pool(spec, url, proc, directory)
        wait_ready(url, timeout=60, proc=proc, log=log)

    def close(self) -> None:
        self.procs.stop_all()
        for pool in self.pools.values():
            shutil.rmtree(pool.metrics_dir, ignore_errors=True)

"""Latency and throughput of `bank-node serve` at a fixed offered load (open loop).

    .venv/bin/python benchmarks/serve.py [--rate 500] [--seconds 20] [--batch 1] \
        [--connections 16] [--warmup 2000]

Starts `bank-node serve` in its own process on a fresh state directory with a model in the
node's format (untrained weights: the cost of a forward pass does not depend on them),
warms its account state up with ``--warmup`` transactions, then sends ``--rate``
transactions per second for ``--seconds`` seconds, ``--batch`` per request.

The client is a process of its own (``--client``, started by `offer`): one thread, a
selector over ``--connections`` persistent keep-alive sockets opened before the clock
starts, requests built beforehand, one request in flight per connection. It is open loop:
request *i* is due at ``i / (rate / batch)`` seconds whether or not earlier ones were
answered, waits for a free connection if none is, and its latency runs from that due time
(coordinated omission: a stalled server is charged for the queue it builds, not hidden by
a client that waits). Transactions are the rows of one bank of the synthetic world (its
accounts and amounts) stamped one simulated second per ``rate`` transactions, so each
account's transactions are sent in time order; two connections may still deliver an
account's transactions of neighbouring seconds out of order, which the service refuses
(422, counted in ``statuses``). Prints the load average at start and end, p50/p90/p99/max
latency, the throughput achieved, the errors, the server's CPU time per transaction and the
client's per request, as a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bank_node.baseline import default_policy, save_model  # noqa: E402
from bank_node.data import load_transactions  # noqa: E402
from models.features import FEATURE_NAMES  # noqa: E402
from models.nets import build_model  # noqa: E402
from models.vector import model_to_vector  # noqa: E402
from simulation.world import generate_world  # noqa: E402

TOKEN = "benchmark-token-0123456789abcdef"
STALL_SECONDS = 60.0  # no answer for this long: the run is abandoned
T0 = 1_662_000_000  # 2022-09-01: the simulated clock's start
FIELDS = ["from_bank", "from_account", "to_bank", "to_account", "receiving_currency",
          "payment_currency", "payment_format"]  # fmt: skip


@dataclass(frozen=True)
class Figures:
    """What one run measured; latencies in milliseconds."""

    offered_tps: float
    batch: int
    requests: int
    transactions: int
    seconds: float
    achieved_tps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    statuses: dict[str, int]  # answers by HTTP status (0: none); see the module docstring
    server_cpu_ms_per_tx: float  # user + system time of the server process: load-independent
    client_cpu_ms_per_request: float  # the client process's own cost, to show it is small
    load_start: float  # the machine's 1-minute load average when the measured run began
    load_end: float  # ... and when it ended: other work on the machine shows here


def transactions_from_world(count: int, seed: int = 5) -> list[dict[str, Any]]:
    """``count`` transactions with the accounts and amounts of one synthetic bank's rows."""
    with tempfile.TemporaryDirectory() as tmp:
        manifest = generate_world(Path(tmp), n_banks=3, preset="tiny", seed=seed)
        first = next(iter(manifest["banks"].values()))
        frame = load_transactions(Path(tmp) / first["file"])
    rows = frame.sort_values("timestamp", kind="stable").to_dict("records")
    out = []
    for i in range(count):
        row = rows[i % len(rows)]
        tx = {name: row[name] for name in FIELDS}
        tx["amount_paid"], tx["amount_received"] = row["amount_paid"], row["amount_received"]
        out.append(tx)
    return out


def stamp(transactions: list[dict[str, Any]], start: int, per_second: float) -> None:
    """Timestamps one simulated second per ``per_second`` transactions, from ``start``."""
    for i, tx in enumerate(transactions):
        t = time.gmtime(start + int(i / per_second))
        tx["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S", t)


def _request_bytes(host: str, body: bytes) -> bytes:
    """One ``POST /score`` as it goes on the wire, built before the clock starts."""
    head = (
        f"POST /score HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=STALL_SECONDS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # one small request: send now
    return sock


def _answer(buffer: bytearray) -> tuple[int, bool] | None:
    """(status, connection closed) once ``buffer`` holds a whole response, else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name == b"content-length":
            length = int(value)
    if len(buffer) < end + 4 + length:
        return None
    return int(head[9:12]), b"connection: close" in head


class _Client:
    """Open-loop sender over persistent connections, one thread, one request per connection."""

    def __init__(self, host: str, port: int, connections: int) -> None:
        self.host, self.port = host, port
        self.selector = selectors.DefaultSelector()
        self.idle: list[socket.socket] = []
        self.busy: dict[socket.socket, tuple[float, bytearray]] = {}
        self.done: list[tuple[float, ...]] = []  # (due, answered, status; 0: no answer)
        for _ in range(connections):
            self._open()

    def _open(self) -> None:
        sock = _connect(self.host, self.port)
        self.selector.register(sock, selectors.EVENT_READ)
        self.idle.append(sock)

    def _drop(self, sock: socket.socket) -> None:
        self.selector.unregister(sock)
        sock.close()
        self._open()  # persistent connections: a closed one is replaced before it is needed

    def send(self, sock: socket.socket, due: float, request: bytes) -> None:
        try:
            sock.sendall(request)
            self.busy[sock] = (due, bytearray())
        except OSError:
            self.done.append((due, time.perf_counter(), 0))
            self._drop(sock)

    def receive(self, timeout: float) -> None:
        """Read whatever arrived within ``timeout``; a whole answer frees its connection."""
        events = self.selector.select(timeout)
        if not events and timeout >= STALL_SECONDS:
            raise TimeoutError(f"the server answered nothing in {STALL_SECONDS} s")
        for key, _ in events:
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            due, buffer = self.busy[sock]
            try:
                chunk = sock.recv(65_536)
            except OSError:
                chunk = b""
            buffer += chunk
            answer = _answer(buffer) if chunk else (0, True)
            if answer is None:
                continue
            self.done.append((due, time.perf_counter(), answer[0]))
            del self.busy[sock]
            if answer[1]:
                self._drop(sock)
            else:
                self.idle.append(sock)

    def run(
        self, requests: list[bytes], per_second: float
    ) -> tuple[float, list[tuple[float, ...]]]:
        """Request *i* is due at ``start + i / per_second``; latency runs from its due time."""
        start = time.perf_counter() + 0.05
        for i, request in enumerate(requests):
            due = start + i / per_second
            while True:
                wait = due - time.perf_counter()
                if wait <= 0 and self.idle:
                    break
                # Late or not, a request waits for a free connection; its clock keeps running.
                self.receive(max(wait, 0.0) if self.idle else STALL_SECONDS)
            self.send(self.idle.pop(), due, request)
        while self.busy:
            self.receive(STALL_SECONDS)
        return start, self.done


def _client_process(spec: Path) -> None:
    """The client's own process: read the requests, send them, write (due, answered, status)."""
    job = json.loads(spec.read_text())
    payloads = Path(job["payloads"]).read_bytes().split(b"\n")
    requests = [_request_bytes(job["host"], body) for body in payloads]
    client = _Client(job["host"], job["port"], job["connections"])
    cpu = time.process_time()
    start, done = client.run(requests, job["per_second"])
    result = {"start": start, "done": done, "cpu_seconds": time.process_time() - cpu}
    Path(job["out"]).write_text(json.dumps(result))


def bodies(transactions: list[dict[str, Any]], batch: int) -> list[bytes]:
    """Request bodies of ``batch`` transactions each (one: the bare transaction object)."""
    if batch == 1:
        return [json.dumps(tx).encode() for tx in transactions]
    chunks = [transactions[i : i + batch] for i in range(0, len(transactions), batch)]
    return [json.dumps({"transactions": chunk}).encode() for chunk in chunks]


def offer(
    url: str, payloads: list[bytes], *, per_second: float, connections: int
) -> tuple[float, list[tuple[float, ...]], float]:
    """Send ``payloads`` open loop at ``per_second`` requests a second, from another process.

    The client runs in a process of its own so that its work never competes with the
    server's for one interpreter. Returns the start and, per request, (due, answered,
    status) on that process's ``time.perf_counter``, and the client's own CPU seconds.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # JSON bodies hold no raw newline, so one per line is unambiguous.
        (work / "payloads").write_bytes(b"\n".join(payloads))
        job = {"host": host, "port": int(port), "per_second": per_second,
               "connections": connections, "payloads": str(work / "payloads"),
               "out": str(work / "out.json")}  # fmt: skip
        (work / "job.json").write_text(json.dumps(job))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, __file__, "--client", str(work / "job.json")],
                       check=True, env=env)  # fmt: skip
        result = json.loads((work / "out.json").read_text())
    done = [tuple(row) for row in result["done"]]
    return float(result["start"]), done, float(result["cpu_seconds"])


def figures(
    start: float,
    done: list[tuple[float, ...]],
    *,
    offered: float,
    batch: int,
    transactions: int,
    cpu_seconds: float,
    client_cpu_seconds: float,
    load: tuple[float, float],
) -> Figures:
    """Percentiles of (answered - due); throughput over the first due to the last answer."""
    latency = np.array([answered - due for due, answered, _ in done]) * 1000
    elapsed = max(answered for _, answered, _ in done) - start
    p50, p90, p99 = np.percentile(latency, [50, 90, 99])
    return Figures(
        offered_tps=offered, batch=batch, requests=len(done), transactions=transactions,
        seconds=round(elapsed, 2), achieved_tps=round(transactions / elapsed, 1),
        p50_ms=round(float(p50), 2), p90_ms=round(float(p90), 2), p99_ms=round(float(p99), 2),
        max_ms=round(float(latency.max()), 2), errors=sum(1 for d in done if d[2] != 200),
        statuses=dict(sorted(Counter(str(int(d[2])) for d in done).items())),
        server_cpu_ms_per_tx=round(cpu_seconds * 1000 / max(transactions, 1), 3),
        client_cpu_ms_per_request=round(client_cpu_seconds * 1000 / max(len(done), 1), 3),
        load_start=round(load[0], 2), load_end=round(load[1], 2),
    )  # fmt: skip


def write_node(directory: Path) -> Path:
    """A node config with [serve] and a model directory, in ``directory``."""
    model = directory / "model"
    policy = default_policy()
    weights = model_to_vector(build_model(policy.model_spec, len(FEATURE_NAMES)))
    save_model(model, weights, policy, 0.5, None)
    (directory / "serve.token").write_text(TOKEN)
    (directory / "credential").write_text("unused")
    (directory / "data.csv").write_text("unused")
    config = directory / "node.toml"
    config.write_text(
        'portal_url = "http://127.0.0.1:9"\nbank = "bench"\ncredential_file = "credential"\n'
        'signing_key_file = "x"\nsecret_context_file = "x"\nckks_params_file = "x"\n'
        'data_file = "data.csv"\nstate_dir = "state"\n'
        f'[serve]\ntoken_file = "serve.token"\nmodel_dir = "{model}"\n'
    )
    return config


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc; 0 without it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def serve_process(config: Path) -> Iterator[tuple[str, int]]:
    """`bank-node serve` on a free port; yields its URL and process id."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "bank_node.cli", "serve", "--config", str(config), "--port", "0"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert process.stdout is not None
        yield json.loads(process.stdout.readline())["listening"], process.pid
    finally:
        process.terminate()
        process.wait(timeout=60)


def run(url: str, *, rate: float, seconds: float, batch: int, connections: int,
        warmup: int, pid: int | None = None) -> Figures:  # fmt: skip
    """Warm the account state up, then measure one open-loop run against ``url``."""
    count = int(rate * seconds)
    transactions = transactions_from_world(warmup + count)
    stamp(transactions, T0, rate)
    if warmup:
        offer(url, bodies(transactions[:warmup], 100), per_second=1e9, connections=1)
    measured = transactions[warmup:]
    load_start = os.getloadavg()[0]
    cpu_before = cpu_seconds(pid)
    start, done, client_cpu = offer(
        url, bodies(measured, batch), per_second=rate / batch, connections=connections
    )
    cpu = cpu_seconds(pid) - cpu_before
    return figures(
        start, done, offered=rate, batch=batch, transactions=len(measured),
        cpu_seconds=cpu, client_cpu_seconds=client_cpu, load=(load_start, os.getloadavg()[0]),
    )  # fmt: skip


def report(result: Figures) -> None:
    """The figures as a table, then as one JSON line."""
    print(f"cpus {os.cpu_count()}  load average (1 min) at start {result.load_start:.2f}, "
          f"at end {result.load_end:.2f}")  # fmt: skip
    print("offered tx/s  batch  requests  achieved tx/s  p50 ms  p90 ms  p99 ms  max ms  errors"
          "  server cpu ms/tx  client cpu ms/req")  # fmt: skip
    print(f"{result.offered_tps:>12.0f}  {result.batch:>5}  {result.requests:>8}  "
          f"{result.achieved_tps:>13.1f}  {result.p50_ms:>6.2f}  {result.p90_ms:>6.2f}  "
          f"{result.p99_ms:>6.2f}  {result.max_ms:>6.1f}  {result.errors:>6}  "
          f"{result.server_cpu_ms_per_tx:>16.3f}  "
          f"{result.client_cpu_ms_per_request:>17.3f}")  # fmt: skip
    print(json.dumps(asdict(result)))


def main() -> None:
    if sys.argv[1:2] == ["--client"]:  # the client's own process (see offer)
        _client_process(Path(sys.argv[2]))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rate", type=float, default=500, help="transactions offered per second")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--batch", type=int, default=1, help="transactions per request")
    p.add_argument("--connections", type=int, default=16, help="client keep-alive connections")
    p.add_argument("--warmup", type=int, default=2000, help="transactions sent before measuring")
    args = p.parse_args()
    print(f"load average (1 min) before start-up {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, serve_process(write_node(Path(tmp))) as server:
        url, pid = server
        result = run(url, rate=args.rate, seconds=args.seconds, batch=args.batch,
                     connections=args.connections, warmup=args.warmup, pid=pid)  # fmt: skip
    report(result)


if __name__ == "__main__":
    main()

"""The demo's ending: one bank promotes the federated model, serves it, scores over HTTP.

Everything goes through the bank's own commands as separate processes, as a bank would
run them: `bank-node models promote` (the same code path), then `bank-node serve` on a
free port, a few held-out transactions from the bank's test period sent to ``POST
/score`` (one alone, then a small batch), and a SIGTERM that must stop the service cleanly.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from bank_node.config import load_config
from bank_node.data import load_transactions
from bank_node.registry import ModelRegistry
from bank_node.splits import split_frame
from simulation.processes import PY, ROOT, Processes, free_port, wait_ready

TOKEN_FILE = "serve.token"  # noqa: S105 (a file name; the token is random, written there)
SERVING_FILE = "serving.json"  # in the demo's output directory: what the ending printed
ALERTS_WANTED = 2  # labelled laundering rows among the held-out transactions sent
QUIET_WANTED = 2  # and ordinary ones
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class ServingDemo:
    """What the ending did: the bank, the promotion, the service's URL and its answers."""

    bank: str
    version: str
    promotion: str  # what `bank-node models promote` printed (or why it refused)
    url: str
    sent: list[dict[str, Any]]  # the transactions, in the order sent
    labels: list[int]  # their labels in the bank's file (1: laundering), for the reader
    answers: list[dict[str, Any]]  # the service's results, in the same order
    exit_code: int  # the service's, after SIGTERM
    seconds: float  # the whole ending, promotion to stop (the demo's time budget)


def serve_demo(slug: str, config_path: Path, procs: Processes) -> ServingDemo:
    """Promote the newest adopted model of ``slug``, serve it, score, stop; what happened."""
    started = time.monotonic()
    config = load_config(config_path)
    registry = ModelRegistry(config.state_dir, config.promotion_tolerance)
    version, promotion = _promote(config_path, registry)
    token = _serve_config(config_path)
    frame = _held_out(config_path)
    sent = [_request(frame, i) for i in range(len(frame))]
    port = free_port()
    argv = [PY, "-m", "bank_node.cli", "serve", "--config", str(config_path)]
    log = config_path.parent / "serve.log"
    proc = procs.start(f"{slug}-serve", [*argv, "--host", "127.0.0.1", "--port", str(port)],
                       dict(os.environ), log)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, timeout=180, proc=proc, log=log)
    answers = [_post(url, token, sent[0])]
    answers += _post(url, token, {"transactions": sent[1:]})["results"]
    labels = [int(v) for v in frame["label"]]
    code = _stop(proc)
    seconds = time.monotonic() - started
    return ServingDemo(slug, version, promotion, url, sent, labels, answers, code, seconds)


def newest_adopted(registry: ModelRegistry) -> str:
    """The newest version this bank's node may serve (adopted by its gate, or ungated)."""
    adopted = [p for p in registry.versions() if p.adopted]
    if not adopted:
        raise RuntimeError(f"{registry.root}: no adopted model version to serve")
    return max(adopted, key=lambda p: p.round).version


def _promote(config_path: Path, registry: ModelRegistry) -> tuple[str, str]:
    """`bank-node models promote` the newest adopted version; what is promoted, and why."""
    wanted = newest_adopted(registry)
    argv = [PY, "-m", "bank_node.cli", "models", "promote", wanted, "--config", str(config_path)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise RuntimeError(f"bank-node models promote failed: {done.stderr.strip()}")
    said = (done.stdout if done.returncode == 0 else done.stderr).strip().splitlines()[-1]
    promoted = registry.promoted()
    if promoted is None:  # refused, and nothing promoted before: nothing to serve
        raise RuntimeError(f"no model to serve: {said}")
    return promoted, said


def _serve_config(config_path: Path) -> str:
    """A fresh bearer token in a 0600 file, and the ``[serve]`` table naming it."""
    token = secrets.token_hex(32)
    path = config_path.parent / TOKEN_FILE
    path.write_text(token + "\n")
    path.chmod(0o600)
    text = config_path.read_text()
    if "\n[serve]" not in text:
        config_path.write_text(text.rstrip("\n") + f'\n\n[serve]\ntoken_file = "{TOKEN_FILE}"\n')
    return token


def _held_out(config_path: Path) -> pd.DataFrame:
    """A few transactions of the bank's test period, laundering ones first, in time order."""
    config = load_config(config_path)
    test = split_frame(load_transactions(config.data_file), config.evaluation, config.data_file)[2]
    chosen = pd.concat(
        [test[test["label"] == 1].head(ALERTS_WANTED), test[test["label"] == 0].head(QUIET_WANTED)]
    )
    # Time order: the service refuses a transaction earlier than its accounts' last one.
    return chosen.sort_values("timestamp", kind="stable")


def _request(frame: pd.DataFrame, position: int) -> dict[str, Any]:
    """Row ``position`` of ``frame`` as ``POST /score`` takes it; its id is its file line."""
    row = frame.iloc[position]
    text = ("from_bank", "from_account", "to_bank", "to_account", "payment_currency",
            "receiving_currency", "payment_format")  # fmt: skip
    return {
        "id": f"line-{int(frame.index[position]) + 2}",  # the header is line 1
        "timestamp": pd.Timestamp(row["timestamp"]).strftime("%Y-%m-%dT%H:%M:%S"),
        **{name: str(row[name]) for name in text},
        "amount_paid": float(row["amount_paid"]),
        "amount_received": float(row["amount_received"]),
    }


def _post(url: str, token: str, payload: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    response = requests.post(f"{url}/score", json=payload, headers=headers, timeout=60)
    if response.status_code != 200:
        raise RuntimeError(f"POST {url}/score: {response.status_code} {response.text}")
    return dict(response.json())


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, as Kubernetes stops a pod; the exit code (0: it stopped cleanly)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"bank-node serve did not stop within {STOP_TIMEOUT:.0f}s") from None


def report_serving(serving: ServingDemo, work: Path) -> None:
    """Print the ending (each answer: score, alert, version, reasons) and keep it as JSON."""
    print(f"\nServing at {serving.bank} (bank-node models promote, then bank-node serve)")
    print(f"  {serving.promotion}")
    print(f"  {serving.url}/score, {len(serving.sent)} held-out transactions of its test period")
    print("  (the service had seen none of these accounts before: their history starts here)")
    for n, (tx, label, answer) in enumerate(
        zip(serving.sent, serving.labels, serving.answers, strict=True)
    ):
        how = "alone  " if n == 0 else "batch  "
        print(f"  {how}{_line(tx, label, answer)}")
    print(
        f"  bank-node serve stopped on SIGTERM, exit code {serving.exit_code} "
        f"(serving took {serving.seconds:.0f}s)"
    )
    (work / SERVING_FILE).write_text(json.dumps(asdict(serving), indent=2))


def _line(tx: dict[str, Any], label: int, answer: dict[str, Any]) -> str:
    alert = "ALERT" if answer["alert"] else "no alert"
    reasons = "; ".join(r["text"] if isinstance(r, dict) else str(r) for r in answer["reasons"])
    return (
        f"{tx['id']:<11} {tx['amount_paid']:>12,.2f} {tx['payment_currency']:<10} "
        f"{tx['payment_format']:<11} labelled {'laundering' if label else 'ordinary  '}  "
        f"score {answer['score']:.4f}  {alert:<8}  model {answer['model']['version']}"
        + (f"  reasons: {reasons}" if reasons else "")
    )

"""A real Prometheus scrapes a live portal (2 gunicorn workers), its scheduler and a real
`bank-node run` through one encrypted round; the values are read back through
Prometheus's HTTP API, and the alert rules are loaded and evaluated against them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bank_node.keys import (
    INTEGRITY_KEY,
    PARAMS,
    PUBLIC_CONTEXT,
    SECRET_CONTEXT,
    ckks_keygen,
    signing_keygen,
)
from bank_node.portal_client import BankClient, OperatorClient, PortalError
from he.codec import TRAILER_SLOTS, encrypt_to_file, pack_update
from he.integrity import tag_value
from he.keys import fingerprint, load_secret_context
from he.params import CkksParams
from he.signing import public_key_b64, sign, update_message
from simulation.world import generate_world
from tests.e2e.conftest import ROOT, LivePortal

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

RULE_FILES = [
    ROOT / "helm" / "consortium-portal" / "files" / "prometheus-rules.yml",
    ROOT / "helm" / "bank-node" / "files" / "prometheus-rules.yml",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else None
    )
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("prometheus is missing on CI; scripts/system-packages.txt must install it")
    pytest.skip("no prometheus binary (apt-get install prometheus, or make system-deps)")


@dataclass
class Node:
    slug: str
    home: Path
    metrics_port: int
    proc: subprocess.Popen[bytes]


@dataclass
class Federation:
    portal: LivePortal
    op: OperatorClient
    node: Node
    work: Path
    beta_body_bytes: int
    delta_body_bytes: int
    started_at: float


@pytest.fixture(scope="module")
def federation(
    live_portal: LivePortal, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Federation]:
    """Three active banks (a real node process, and `beta` and `delta` played by this test)
    and a suspended one, under a one-round policy; yields once the node is running."""
    started_at = time.time()
    work = tmp_path_factory.mktemp("ops")
    generate_world(work / "data", n_banks=2, preset="tiny", seed=3)
    params = CkksParams()
    ckks_keygen(work / "ceremony", params)
    op = OperatorClient(live_portal.url, "operator", live_portal.operator_password)
    public = (work / "ceremony" / PUBLIC_CONTEXT).read_bytes()
    op.key_epoch_register(base64.b64encode(public).decode(), params.to_dict())
    op.policy_create(
        name="ops",
        active=True,
        min_banks=3,
        local_epochs=1,
        batch_size=512,
        learning_rate=3e-3,
        max_rounds=1,
        deadline_seconds=600,
        normalize_features=False,
        ckks_params=params.to_dict(),
        # No signed roster here (an unpinned test node and banks played by the test with
        # hand-made v1 uploads): v2 needs the roster's keys, so this metrics test runs v1.
        secure_aggregation="v1",
    )
    home = work / "alpha"
    home.mkdir()
    for name in (SECRET_CONTEXT, INTEGRITY_KEY, PARAMS):
        shutil.copy2(work / "ceremony" / name, home / name)
    credential = op.bank_create("alpha")["credential"]
    (home / "credential").write_text(credential)
    BankClient(live_portal.url, credential).register_signing_key(signing_keygen(home))
    op.bank_create("gamma")
    op.bank_action("gamma", "suspend")
    port = _free_port()
    data = sorted((work / "data").glob("bank_*.csv"))[0]
    (home / "node.toml").write_text(
        f'portal_url = "{live_portal.url}"\nbank = "alpha"\ncredential_file = "credential"\n'
        f'signing_key_file = "signing.key"\nsecret_context_file = "{SECRET_CONTEXT}"\n'
        f'ckks_params_file = "{PARAMS}"\ndata_file = "{data}"\nstate_dir = "state"\n'
        f"poll_interval_seconds = 0.5\nmetrics_port = {port}\n"
        # A test consortium: this portal has no signed roster.
        "allow_unpinned_roster = true\n"
    )
    beta = _played_bank(live_portal, op, "beta")
    delta = _played_bank(live_portal, op, "delta")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bank_node.cli", "run", "--config", str(home / "node.toml")],
        cwd=ROOT,
        stdout=open(home / "node.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        node = Node("alpha", home, port, proc)
        fed = Federation(live_portal, op, node, work, 0, 0, started_at)
        fed.beta_body_bytes = _beta_takes_part(fed, beta)
        fed.delta_body_bytes = _delta_takes_part(fed, delta)
        yield fed
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class PlayedBank:
    slug: str
    client: BankClient
    key: Ed25519PrivateKey


def _played_bank(portal: LivePortal, op: OperatorClient, slug: str) -> PlayedBank:
    key = Ed25519PrivateKey.generate()
    client = BankClient(portal.url, op.bank_create(slug)["credential"])
    client.register_signing_key(public_key_b64(key))
    return PlayedBank(slug, client, key)


def _encrypted_body(
    fed: Federation, bank: PlayedBank, vector_length: int, seed: int, number: int
) -> Any:
    """A real encrypted update of ``bank`` written to a file: (path, digest)."""
    secret = load_secret_context((fed.work / "ceremony" / SECRET_CONTEXT).read_bytes())
    public = (fed.work / "ceremony" / PUBLIC_CONTEXT).read_bytes()
    weights = np.random.default_rng(seed).normal(0, 0.1, vector_length - TRAILER_SLOTS)
    body = fed.work / f"{bank.slug}-update.ckks"
    # A member tags its update with the consortium's integrity key.
    key = (fed.work / "ceremony" / INTEGRITY_KEY).read_bytes()
    tag = tag_value(key, fingerprint(public), number, bank.slug)
    digest = encrypt_to_file(
        secret, pack_update(weights, 500, tag), CkksParams(), fingerprint(public), body
    )
    return body, digest


def _delta_takes_part(fed: Federation, delta: PlayedBank) -> int:
    """Once round 1 is open: one good upload. Returns its size."""
    rnd = _wait_for(lambda: delta.client.current_round(), "round 1 to open", timeout=60)
    body, digest = _encrypted_body(fed, delta, rnd.vector_length, seed=1, number=rnd.number)
    message = update_message(rnd.number, delta.slug, digest)
    delta.client.upload_update(rnd.number, body, digest, sign(delta.key, message))
    return body.stat().st_size


def _beta_takes_part(fed: Federation, beta: PlayedBank) -> int:
    """Once round 1 opens: a forged upload, an empty one, then a good one. Returns the
    size of the body that went through (the forged attempt's body is never read)."""
    rnd = _wait_for(lambda: beta.client.current_round(), "round 1 to open", timeout=60)
    body, digest = _encrypted_body(fed, beta, rnd.vector_length, seed=0, number=rnd.number)
    number = rnd.number
    message = update_message(number, "beta", digest)
    with pytest.raises(PortalError) as forged:
        beta.client.upload_update(number, body, digest, sign(Ed25519PrivateKey.generate(), message))
    assert forged.value.status == 403
    empty = fed.work / "empty"
    empty.write_bytes(b"")
    empty_digest = hashlib.sha256(b"").hexdigest()
    # Signed, so that it passes the signature check and is refused for its empty body.
    empty_signature = sign(beta.key, update_message(number, "beta", empty_digest))
    with pytest.raises(PortalError) as refused:
        beta.client.upload_update(number, empty, empty_digest, empty_signature)
    assert refused.value.status == 400
    beta.client.upload_update(number, body, digest, sign(beta.key, message))
    return body.stat().st_size


def _wait_for(probe: Any, what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def evaluated(federation: Federation) -> dict[str, Any]:
    """The node's own record of the global model it evaluated after round 1."""
    state_file = federation.node.home / "state" / "state.json"

    def done() -> dict[str, Any] | None:
        if federation.node.proc.poll() is not None:
            raise AssertionError((federation.node.home / "node.log").read_text()[-3000:])
        if state_file.exists():
            return json.loads(state_file.read_text())["evaluated"].get("1")
        return None

    return _wait_for(done, "the node to evaluate round 1", timeout=240)


@dataclass
class Prometheus:
    url: str

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def eventually(self, promql: str, expected: float, timeout: float = 30) -> float | None:
        """Poll until ``promql`` gives ``expected`` (a scrape may not have happened yet)."""
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.scalar(promql)
            if got is not None and abs(got - expected) < 1e-9 * max(1, abs(expected)):
                return got
            time.sleep(0.5)
        return got


@pytest.fixture(scope="module")
def prometheus(
    prometheus_binary: str, federation: Federation, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    work = tmp_path_factory.mktemp("prometheus")
    portal = federation.portal
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in RULE_FILES],
        "scrape_configs": [
            {
                "job_name": "portal",
                "authorization": {"type": "Bearer", "credentials": portal.metrics_token},
                "static_configs": [{"targets": [portal.url.removeprefix("http://")]}],
            },
            {
                "job_name": "scheduler",
                "static_configs": [
                    {"targets": [portal.scheduler_metrics_url.split("/")[2]]},
                ],
            },
            {
                "job_name": "bank-node",
                "static_configs": [{"targets": [f"127.0.0.1:{federation.node.metrics_port}"]}],
            },
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    log = open(work / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prom = Prometheus(f"http://127.0.0.1:{port}")
    try:
        for job in ("portal", "scheduler", "bank-node"):
            assert _up(prom, job, proc, work), f"Prometheus never saw {job} up"
        yield prom
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _up(prom: Prometheus, job: str, proc: subprocess.Popen[bytes], work: Path) -> bool:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError((work / "prometheus.log").read_text())
        try:
            if prom.scalar(f'up{{job="{job}"}}') == 1:
                return True
        except requests.RequestException:
            pass  # not listening yet
        time.sleep(0.5)
    return False


def test_prometheus_scrapes_the_portal_its_scheduler_and_the_bank_node(prometheus):
    for job in ("portal", "scheduler", "bank-node"):
        assert prometheus.scalar(f'up{{job="{job}"}}') == 1


def test_requests_counted_by_two_workers_add_up_to_the_requests_made(prometheus, federation):
    for _ in range(7):
        assert requests.get(f"{federation.portal.url}/healthz", timeout=5).status_code == 200
    query = 'sum(consortium_http_requests_total{job="portal",view="healthz",status="200"})'
    assert prometheus.eventually(query, 7) == 7


def test_banks_by_status_are_what_the_operator_set_up(prometheus, federation):
    assert prometheus.eventually('consortium_banks{status="active"}', 3) == 3
    assert prometheus.eventually('consortium_banks{status="suspended"}', 1) == 1
    assert prometheus.scalar('consortium_banks{status="revoked"}') == 0


def test_updates_accepted_rejected_and_bytes_agree_between_portal_and_node(
    prometheus, federation, evaluated
):
    assert prometheus.eventually("sum(consortium_updates_accepted_total)", 3) == 3
    rejected = 'sum(consortium_updates_rejected_total{{job="portal",reason="{}"}})'
    assert prometheus.eventually(rejected.format("bad_signature"), 1) == 1
    assert prometheus.eventually(rejected.format("empty"), 1) == 1
    node_bytes = prometheus.scalar("bank_node_upload_bytes_total")
    assert node_bytes is not None and node_bytes > 0
    # The portal read the node's update, beta's signed one and delta's: beta's forged
    # attempt was refused on its signature before a byte of its body was read.
    expected = node_bytes + federation.beta_body_bytes + federation.delta_body_bytes
    assert (
        prometheus.eventually('sum(consortium_upload_bytes_total{job="portal"})', expected)
        == expected
    )


def test_the_published_round_is_counted_and_timed_by_the_scheduler(prometheus, evaluated):
    assert prometheus.eventually('consortium_rounds{state="published"}', 1) == 1
    assert prometheus.eventually("consortium_round_in_flight_number", 0) == 0
    # The round's state comes from the portal's scrape; the scheduler's histograms from its
    # own, which may come a scrape later: wait for them too.
    aggregations = 'consortium_aggregation_duration_seconds_count{job="scheduler"}'
    assert prometheus.eventually(aggregations, 1) == 1
    open_to_publish = 'consortium_round_open_to_publish_seconds_count{job="scheduler"}'
    assert prometheus.eventually(open_to_publish, 1) == 1
    assert prometheus.scalar("consortium_round_open_to_publish_seconds_sum") > 0
    assert prometheus.scalar('consortium_bank_missed_rounds{bank="alpha"}') == 0


def test_the_node_reports_its_round_and_the_auprc_it_measured(prometheus, federation, evaluated):
    assert prometheus.eventually("bank_node_global_model_round", 1) == 1
    auprc = evaluated["auprc"]
    assert prometheus.eventually("bank_node_global_model_auprc", auprc) == pytest.approx(auprc)
    assert prometheus.scalar("bank_node_rounds_joined_total") == 1
    assert prometheus.scalar('bank_node_local_update_duration_seconds_count{kind="training"}') == 1
    assert prometheus.scalar("bank_node_encrypt_duration_seconds_count") == 1
    assert prometheus.scalar("bank_node_decrypt_duration_seconds_count") >= 1
    assert prometheus.scalar("bank_node_privacy_epsilon_spent") == 0
    assert prometheus.scalar('bank_node_info{bank="alpha"}') == 1
    last = prometheus.scalar("bank_node_last_successful_round_timestamp_seconds")
    assert federation.started_at < last <= time.time()


def test_the_scheduler_verifies_the_whole_audit_chain_the_portal_counts(prometheus, evaluated):
    assert prometheus.eventually("consortium_audit_chain_verified", 1) == 1
    # Every few seconds (CONSORTIUM_AUDIT_VERIFY_INTERVAL=5 in the live portal) the walk
    # catches up with the chain's head, which the web tier reads from the database.
    length = prometheus.scalar("consortium_audit_chain_length")
    assert length is not None and length > 10  # banks, keys, policy, round, updates...
    behind = "consortium_audit_chain_length - on() consortium_audit_chain_verified_events"
    assert prometheus.eventually(behind, 0) == 0


def test_every_alert_rule_evaluates_against_the_live_series_and_none_fires(prometheus, evaluated):
    time.sleep(2)  # at least one evaluation (every second) after the round
    response = requests.get(f"{prometheus.url}/api/v1/rules", timeout=5).json()
    rules = [r for g in response["data"]["groups"] for r in g["rules"]]
    assert len(rules) >= 8
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    assert [r["name"] for r in rules if r.get("state") == "firing"] == []

"""The README's "Using it" walk-through, run line by line against a test database.

Each ``python manage.py`` line is the management command, each ``bank-node`` line the
node's CLI (its HTTP routed into the portal in this process), each ``cp`` a copy. Only the
long-running lines are stood in for: the portal (``gunicorn``) is Django's test client,
``migrate`` is the test database and ``run_scheduler`` is the scheduler's tick, called
while the nodes run. Each ``bank-node run`` line runs as written, plus ``--max-rounds 1``
(exit once a training round is published and evaluated), on a thread of its own; the
nodes' requests are answered on the test's thread, inside its database transaction.
"""

from __future__ import annotations

import json
import queue
import re
import shlex
import shutil
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client
from requests import PreparedRequest, Response
from requests.adapters import BaseAdapter

from bank_node import cli as node_cli
from bank_node.portal_client import BankClient
from simulation.world import generate_world
from tests.portal_transport import DjangoTransport

ROOT = Path(__file__).resolve().parents[2]
PORTAL = "https://portal.example"
BANKS = ("alpha", "beta", "gamma")
# The stand-in for a long-running node: one published training round, and an exit after
# this long without progress should the round never come (the test then fails, not hangs).
RUN_FLAGS = ["--max-rounds", "1", "--idle-exit-seconds", "150"]
ROUND_TIMEOUT = 420.0  # seconds for the statistics round and the first training round
TICK_SECONDS = 0.5  # how often the stand-in scheduler ticks


def _blocks(readme: str, section: str) -> tuple[str, list[str]]:
    """The ``toml`` block and the commands of the ``sh`` block under ``section``."""
    part = readme.split(section, 1)[1]
    toml = re.search(r"```toml\n(.*?)```", part, re.S)
    sh = re.search(r"```sh\n(.*?)```", part, re.S)
    assert toml is not None and sh is not None, f"README: {section} lost its blocks"
    lines = [line.split("   #")[0].strip() for line in sh.group(1).splitlines()]
    return toml.group(1), [line for line in lines if line and not line.startswith("#")]


class Relay(BaseAdapter):
    """The portal for every BankClient: node threads' requests wait for the test's thread.

    Django's test database is one connection in one transaction, on the test's thread; a
    request sent from another thread would open another connection and see nothing.
    """

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.direct = DjangoTransport(client)
        self.calls: queue.Queue[tuple[PreparedRequest, Future[Response]]] = queue.Queue()

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        if threading.current_thread() is threading.main_thread():
            return self.direct.send(request)
        # An upload's file stays open while the node's thread waits here for the answer.
        answer: Future[Response] = Future()
        self.calls.put((request, answer))
        return answer.result(timeout=ROUND_TIMEOUT)

    def serve(self, threads: list[threading.Thread], tick: Any) -> None:
        """Answer the nodes and tick the scheduler until every node thread has exited."""
        deadline = time.monotonic() + ROUND_TIMEOUT
        next_tick = 0.0
        while any(t.is_alive() for t in threads):
            assert time.monotonic() < deadline, "no training round published in time"
            if time.monotonic() >= next_tick:
                tick()
                next_tick = time.monotonic() + TICK_SECONDS
            try:
                request, answer = self.calls.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                answer.set_result(self.direct.send(request))
            except Exception as exc:  # the node's client raises it, as a dropped connection
                answer.set_exception(exc)

    def close(self) -> None:
        pass


class Walk:
    """Runs one README line; starts each ``bank-node run`` on a thread of its own."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.started: list[str] = []
        self.threads: list[threading.Thread] = []
        self.exits: dict[str, int] = {}

    def __call__(self, line: str) -> None:
        argv = shlex.split(line)
        if argv[:2] == ["python", "manage.py"]:
            self.manage(argv[2:])
        elif argv[0] == "bank-node":
            self.node(argv[1:])
        elif argv[0] == "cp":
            for source in argv[1:-1]:
                shutil.copy(self.work / source, self.work / argv[-1])
        else:
            assert argv[0] == "gunicorn", f"README line the test cannot run: {line}"

    def manage(self, args: list[str]) -> None:
        if args[0] == "migrate":
            return  # the test database is migrated
        if args[0] == "run_scheduler":
            return  # long-running: ticked by Relay.serve while the nodes run
        call_command(*args)

    def node(self, args: list[str]) -> None:
        if args[0] != "run":
            assert node_cli.main(args) == 0, f"bank-node {' '.join(args)} failed"
            return
        config = args[-1]
        self.started.append(config)

        def run() -> None:
            self.exits[config] = node_cli.main([*args, *RUN_FLAGS])

        self.threads.append(threading.Thread(target=run, name=config, daemon=True))
        self.threads[-1].start()


@pytest.fixture
def relay(monkeypatch: pytest.MonkeyPatch) -> Relay:
    """Every BankClient the node's CLI builds talks to this process's portal."""
    relay = Relay(Client())
    original = BankClient.__init__

    def init(self: BankClient, base_url: str, credential: str, **kwargs: Any) -> None:
        original(self, base_url, credential, **kwargs)
        self.session.mount(PORTAL, relay)

    monkeypatch.setattr(BankClient, "__init__", init)
    return relay


@pytest.fixture
def bank_files(tmp_path: Path) -> None:
    """Each bank's own transactions where its ``--data-file`` names them (beside node.toml)."""
    world = tmp_path / "world"
    generate_world(world, n_banks=len(BANKS), preset="tiny", seed=5)
    for i, slug in enumerate(BANKS, start=1):
        (tmp_path / slug).mkdir()
        shutil.move(world / f"bank_{i}.csv", tmp_path / slug / f"{slug}.csv")
    shutil.rmtree(world)


@pytest.mark.django_db
@pytest.mark.timeout(600)
def test_the_readme_walkthrough_founds_a_consortium_and_publishes_its_first_training_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay: Relay, bank_files: None
):
    from consortium.governance.selectors import roster_state
    from consortium.members.models import Bank
    from consortium.rounds.models import KeyEpoch, Round, RoundKind, RoundPolicy, RoundState
    from consortium.rounds.services import scheduler_tick

    policy_toml, commands = _blocks((ROOT / "README.md").read_text(), "### From nothing")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy.toml").write_text(policy_toml)
    (tmp_path / "olivia.password").write_text("a long operator passphrase 7\n")
    walk = Walk(tmp_path)
    for line in commands:
        walk(line)
    relay.serve(walk.threads, scheduler_tick)

    state = roster_state()
    assert state is not None and state.consortium_id == "acme-aml"
    assert [m.bank_id for m in state.active_members()] == list(BANKS)
    epoch = KeyEpoch.objects.get()
    assert state.key_epochs == (epoch.fingerprint,)
    policy = RoundPolicy.objects.get(active=True)
    assert (policy.name, policy.version, policy.local_epochs) == ("fraud", 1, 2)
    assert state.is_policy_approved("fraud", 1, policy.as_snapshot().digest())
    for bank in Bank.objects.all():
        assert bank.signing_public_key == state.signing_key_of(bank.slug)
        assert (tmp_path / bank.slug / "credential").stat().st_mode & 0o777 == 0o600
    assert walk.started == [f"{slug}/node.toml" for slug in BANKS]
    assert walk.exits == {f"{slug}/node.toml": 0 for slug in BANKS}

    published = Round.objects.filter(kind=RoundKind.TRAINING, state=RoundState.PUBLISHED)
    rnd = published.order_by("number").first()
    assert rnd is not None and rnd.policy == policy and rnd.key_epoch == epoch
    assert sorted(i["bank"] for i in rnd.manifest["inputs"]) == list(BANKS)
    for slug in BANKS:
        saved = tmp_path / slug / "state"
        meta = json.loads((saved / "global_model.json").read_text())
        assert meta["round"] == rnd.number
        weights = np.load(saved / "global_model.npy")
        assert weights.shape == (policy.vector_length - 2,) and np.isfinite(weights).all()

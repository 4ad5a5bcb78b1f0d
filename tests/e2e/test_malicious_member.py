"""One malicious member against a live portal and real ``bank-node run`` processes.

Four banks found a consortium on a live portal (gunicorn and the scheduler; PostgreSQL under
``make test``): three honest ``bank-node run`` processes and one bank, ``mallory``, running
``tests/e2e/malicious_node.py`` (the real agent, corrupting its uploads on a plan). Mallory
plays one attack per published training round, after honest rounds that give the
consortium a model to protect and before an honest round that shows training goes on.
In every mode the honest processes keep running, the attacked round is refused by every
honest node (objections, so the round is disputed) or rejected by the evaluation gate, and
no later round is built on it.

Two federations, each with its own portal: the modes the integrity checks catch (count
x1000, negative count, foreign key, random coefficients, overflow: 6 minutes on two
shared cores), and the modes only bounded influence and the gate can catch (update x100,
sign flip, label flip), written to docs/robustness.md's contract (``update_clip_norm``,
``max_bank_share``, ``gate_tolerance``; ``gate_decision`` on the round).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bank_node.keys import PARAMS, PUBLIC_CONTEXT, SECRET_CONTEXT, ckks_keygen
from bank_node.portal_client import BankClient, OperatorClient, PortalError
from he.params import CkksParams
from protocol import RoundInfo
from simulation import ceremony
from simulation.processes import PortalOptions, free_port, portal_env, running_portal
from simulation.world import generate_world
from tests.e2e.conftest import ROOT, LivePortal, _fresh_database, until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

HONEST = ("alpha", "beta", "gamma")
ATTACKER = "mallory"
NODE_RUN = (sys.executable, "-m", "bank_node.cli", "run")
MALICIOUS_RUN = (sys.executable, "-m", "tests.e2e.malicious_node")
# The demo's model: one that learns on the tiny world, so a harmful push shows at the gate.
SPEC = {"kind": "mlp", "hidden": [32, 16], "seed": 3, "loss": "bce", "pos_weight": 10}
# Each refused round costs the next one too: it opens on the refused base before the
# objections dispute it, every node sits it out, and it fails at this deadline.
DEADLINE = 40
INTEGRITY_PLAN = ("honest", "count_x1000", "negative_count", "foreign_key",
                  "random_coefficients", "overflow", "honest")  # fmt: skip
# Late in training, where a harmful push is not outweighed by the honest banks' progress.
INFLUENCE_PLAN = ("honest", "honest", "honest", "scaled_x100", "sign_flip", "label_flip",
                  "honest")  # fmt: skip
# docs/robustness.md: the policy fields of bounded influence and the gate.
INFLUENCE_POLICY = {"update_clip_norm": 6.0, "max_bank_share": 0.5, "gate_tolerance": 0.0}


@dataclass
class Outcome:
    """What a federation with one malicious member left behind."""

    rounds: dict[int, RoundInfo]
    attacks: dict[int, str]  # attacked (or honest) round -> mallory's mode, from its log
    refused: dict[str, dict[str, str]]  # honest bank -> round -> the reason it refused
    disputed: set[int]
    alive: dict[str, bool]  # each node process still running when the federation ended
    logs: dict[str, str]

    def attacked(self, modes: tuple[str, ...]) -> dict[str, int]:
        """Each mode -> the published round mallory played it in."""
        found = {m: n for n, m in self.attacks.items()
                 if m in modes and self.rounds[n].state == "published"}  # fmt: skip
        assert set(found) == set(modes), f"modes never played in a published round: {self.attacks}"
        return found

    def published_on(self, number: int) -> list[int]:
        """Published rounds whose base is round ``number``."""
        return [r.number for r in self.rounds.values()
                if r.base_round == number and r.state == "published"]  # fmt: skip


@pytest.fixture(scope="module")
def integrity_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    yield from _federation(tmp_path_factory, "integrity", INTEGRITY_PLAN, {})


@pytest.fixture(scope="module")
def influence_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    yield from _federation(tmp_path_factory, "influence", INFLUENCE_PLAN, INFLUENCE_POLICY)


def _federation(factory: pytest.TempPathFactory, name: str, plan: tuple[str, ...],
                extra: dict[str, Any]) -> Iterator[Outcome]:  # fmt: skip
    """Found a four-bank consortium and run the nodes until the policy's rounds are done."""
    with _portal(factory.mktemp(f"{name}-portal")) as portal:
        work = factory.mktemp(name)
        op, client, homes = _found(portal, work, plan, extra)
        procs = _start_nodes(homes, plan)
        try:
            until(lambda: _done(op, homes, len(plan)), timeout=DEADLINE * 4 * len(plan) + 300)
            alive = {slug: proc.poll() is None for slug, proc in procs.items()}
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                proc.wait(timeout=30)
        yield _outcome(op, client, homes, alive)


@contextlib.contextmanager
def _portal(var_dir: Path) -> Iterator[LivePortal]:
    """A fresh portal: its own database on PostgreSQL, a file on SQLite."""
    database_url, _ = _fresh_database(os.environ.get("DATABASE_URL"))
    env = portal_env(var_dir, database_url=database_url)
    password = secrets.token_urlsafe(16)
    options = PortalOptions(scheduler_metrics_port=free_port(), multiproc_dir=var_dir / "prom")
    with running_portal(env, password, options) as running:
        yield LivePortal(running.url, env, var_dir, password, database_url)


def _found(portal: LivePortal, work: Path, plan: tuple[str, ...], extra: dict[str, Any]
           ) -> tuple[OperatorClient, BankClient, dict[str, Path]]:  # fmt: skip
    """Key ceremony, policy, a genesis the four banks sign, node configs; an honest
    bank's client (to read disputes) and each bank's home."""
    slugs = (ATTACKER, *HONEST)  # mallory is bank 1, the largest: the most influence
    generate_world(work / "data", n_banks=len(slugs), preset="tiny", seed=13)
    params = CkksParams()
    epoch = ckks_keygen(work / "ceremony", params)
    op = OperatorClient(portal.url, "operator", portal.operator_password)
    public = (work / "ceremony" / PUBLIC_CONTEXT).read_bytes()
    op.key_epoch_register(base64.b64encode(public).decode(), params.to_dict())
    policy = op.policy_create(
        name="attacked", active=False, min_banks=3, local_epochs=2, batch_size=256,
        learning_rate=3e-3, max_rounds=len(plan), max_consecutive_failures=50,
        deadline_seconds=DEADLINE, normalize_features=True, model_spec=SPEC,
        ckks_params=params.to_dict(), secure_aggregation="v2", aggregate_checkers=0, **extra,
    )  # fmt: skip
    banks, homes = [], {}
    for slug, csv in zip(slugs, sorted((work / "data").glob("bank_*.csv")), strict=True):
        bank = ceremony.bank_prepare(work / slug, work / "ceremony", op)
        bank.client(portal.url).register_signing_key(bank.member().signing_key)
        (bank.home / "node.toml").write_text(
            f'portal_url = "{portal.url}"\nbank = "{slug}"\ncredential_file = "credential"\n'
            f'signing_key_file = "signing.key"\nsecret_context_file = "{SECRET_CONTEXT}"\n'
            f'ckks_params_file = "{PARAMS}"\ndata_file = "{csv}"\nstate_dir = "state"\n'
            f'genesis_file = "{ceremony.GENESIS_FILE}"\npoll_interval_seconds = 0.5\n'
        )
        homes[slug] = bank.home
        banks.append(bank)
    draft = ceremony.draft_genesis("attacked", banks, key_epoch=epoch,
                                   policies=[ceremony.approval_of(policy)])  # fmt: skip
    genesis = ceremony.found(portal.url, op, banks, draft)
    for bank in banks:
        ceremony.write_genesis(genesis, bank.home / ceremony.GENESIS_FILE)
    op.policy_activate(policy["id"])
    return op, banks[1].client(portal.url), homes


def _start_nodes(homes: dict[str, Path], plan: tuple[str, ...]) -> dict[str, subprocess.Popen]:
    """Three ``bank-node run`` processes and mallory's, each logging into its home."""
    procs = {}
    for slug, home in homes.items():
        argv = [*MALICIOUS_RUN, "--plan", ",".join(plan)] if slug == ATTACKER else [*NODE_RUN]
        with open(home / "node.log", "wb") as log:  # the child keeps its own descriptor
            procs[slug] = subprocess.Popen([*argv, "--config", str(home / "node.toml")],
                                           cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    return procs


def _done(op: OperatorClient, homes: dict[str, Path], trained: int) -> bool:
    """The policy's training rounds are published (the scheduler opens no more) and every
    honest node has used the last one."""
    published = [r.number for r in _rounds(op).values()
                 if r.is_training and r.state == "published"]  # fmt: skip
    if len(published) < trained:
        return False
    last = str(max(published))
    return all(last in _node_state(homes[s]).get("evaluated", {}) for s in HONEST)


def _rounds(op: OperatorClient) -> dict[int, RoundInfo]:
    try:
        return {r.number: r for r in op.rounds()}
    except PortalError:  # polled again
        return {}


def _node_state(home: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((home / "state" / "state.json").read_text()))
    except (OSError, ValueError):  # not written yet, or caught mid-write: read again
        return {}


def _disputed(client: BankClient, number: int) -> bool:
    """The portal's answer, derived from the banks' signed objections (404: not disputed)."""
    try:
        return bool(client.dispute(number).get("disputed"))
    except PortalError as exc:
        if exc.status == 404:
            return False
        raise


def _outcome(op: OperatorClient, client: BankClient, homes: dict[str, Path],
             alive: dict[str, bool]) -> Outcome:  # fmt: skip
    rounds = _rounds(op)
    log = homes[ATTACKER] / "state" / "attacks.json"
    attacks = {int(n): m for n, m in json.loads(log.read_text()).items()} if log.exists() else {}
    disputed = {n for n in rounds if n in attacks and _disputed(client, n)}
    return Outcome(
        rounds=rounds,
        attacks=attacks,
        refused={s: _node_state(homes[s]).get("refused", {}) for s in HONEST},
        disputed=disputed,
        alive=alive,
        logs={s: (h / "node.log").read_text(errors="replace")[-4000:] for s, h in homes.items()},
    )


# --- the modes the integrity checks catch (their defences exist) ----------------------------


def test_every_node_process_outlives_the_integrity_attacks(integrity_run: Outcome) -> None:
    assert all(integrity_run.alive.values()), (integrity_run.alive, integrity_run.logs)


@pytest.mark.parametrize("mode", INTEGRITY_PLAN[1:-1])
def test_an_integrity_attack_is_refused_by_every_honest_node_and_disputed(
    integrity_run: Outcome, mode: str
) -> None:
    number = integrity_run.attacked(INTEGRITY_PLAN[1:-1])[mode]
    for slug, refused in integrity_run.refused.items():
        assert str(number) in refused, (slug, mode, integrity_run.logs[slug])
    assert number in integrity_run.disputed


@pytest.mark.parametrize("mode", INTEGRITY_PLAN[1:-1])
def test_no_round_is_built_on_an_integrity_attack(integrity_run: Outcome, mode: str) -> None:
    number = integrity_run.attacked(INTEGRITY_PLAN[1:-1])[mode]
    # The scheduler may open the next round on it before the objections arrive; every
    # node then sits that round out (its base was refused) and it fails, unpublished.
    assert integrity_run.published_on(number) == []


def test_training_goes_on_after_the_attacks_from_an_undisputed_base(integrity_run: Outcome) -> None:
    published = sorted(n for n, r in integrity_run.rounds.items()
                       if r.is_training and r.state == "published")  # fmt: skip
    last = integrity_run.rounds[published[-1]]
    assert integrity_run.attacks.get(last.number) == "honest"
    assert last.base_round is not None and last.base_round not in integrity_run.disputed
    assert integrity_run.attacks.get(last.base_round) == "honest"
    for slug, refused in integrity_run.refused.items():
        assert str(last.number) not in refused, slug


# --- the modes only bounded influence and the gate catch (docs/robustness.md's contract) -----


def test_every_node_process_outlives_the_poisoned_updates(influence_run: Outcome) -> None:
    assert all(influence_run.alive.values()), (influence_run.alive, influence_run.logs)


@pytest.mark.parametrize("mode", INFLUENCE_PLAN[3:-1])
def test_a_poisoned_update_is_refused_and_disputed_or_rejected_by_the_gate(
    influence_run: Outcome, mode: str
) -> None:
    number = influence_run.attacked(INFLUENCE_PLAN[3:-1])[mode]
    info = influence_run.rounds[number]
    refused_by_all = all(str(number) in r for r in influence_run.refused.values())
    assert (refused_by_all and number in influence_run.disputed) or info.gate_decision == "reject", (
        mode, info.gate_decision, influence_run.refused, influence_run.logs)  # fmt: skip


@pytest.mark.parametrize("mode", INFLUENCE_PLAN[3:-1])
def test_no_round_is_built_on_a_poisoned_update(influence_run: Outcome, mode: str) -> None:
    number = influence_run.attacked(INFLUENCE_PLAN[3:-1])[mode]
    assert influence_run.published_on(number) == []

"""The README's "Using it" walk-through, run line by line against a test database.

Each ``python manage.py`` line is the management command, each ``bank-node`` line the
node's CLI (its HTTP routed into the portal in this process), each ``cp`` a copy. Only the
long-running lines are stood in for: the portal (``gunicorn``) is Django's test client,
``migrate`` is the test database, ``run_scheduler`` is one scheduler tick and ``bank-node
run`` is the node's start-up check of the roster it pins.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from bank_node import cli as node_cli
from bank_node.config import load_config
from bank_node.keys import keyring_load
from bank_node.portal_client import BankClient
from tests.portal_transport import DjangoTransport

ROOT = Path(__file__).resolve().parents[2]
PORTAL = "https://portal.example"


def _blocks(readme: str, section: str) -> tuple[str, list[str]]:
    """The ``toml`` block and the commands of the ``sh`` block under ``section``."""
    part = readme.split(section, 1)[1]
    toml = re.search(r"```toml\n(.*?)```", part, re.S)
    sh = re.search(r"```sh\n(.*?)```", part, re.S)
    assert toml is not None and sh is not None, f"README: {section} lost its blocks"
    lines = [line.split("   #")[0].strip() for line in sh.group(1).splitlines()]
    return toml.group(1), [line for line in lines if line and not line.startswith("#")]


class Walk:
    """Runs one README line; remembers the node configs that ``bank-node run`` starts."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.started: list[str] = []

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
            from consortium.rounds.services import scheduler_tick

            scheduler_tick()
            return
        call_command(*args)

    def node(self, args: list[str]) -> None:
        if args[0] == "run":
            self.started.append(args[-1])
            config = load_config(self.work / args[-1])
            keys = keyring_load(
                config.secret_context_file, config.ckks_params_file, config.signing_key_file
            )
            client = BankClient(config.portal_url, config.credential, max_retries=0)
            assert node_cli._keeper(config, keys, client) is not None  # pinned and verified
            return
        assert node_cli.main(args) == 0, f"bank-node {' '.join(args)} failed"


@pytest.fixture
def portal_routed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every BankClient the node's CLI builds talks to this process's portal."""
    client = Client()
    original = BankClient.__init__

    def init(self: BankClient, base_url: str, credential: str, **kwargs: Any) -> None:
        original(self, base_url, credential, **kwargs)
        self.session.mount(PORTAL, DjangoTransport(client))

    monkeypatch.setattr(BankClient, "__init__", init)


@pytest.mark.django_db
def test_the_readme_walkthrough_founds_a_consortium_and_opens_its_first_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, portal_routed: None
):
    from consortium.governance.selectors import roster_state
    from consortium.members.models import Bank
    from consortium.rounds.models import KeyEpoch, Round, RoundPolicy

    policy_toml, commands = _blocks((ROOT / "README.md").read_text(), "### From nothing")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "policy.toml").write_text(policy_toml)
    (tmp_path / "olivia.password").write_text("a long operator passphrase 7\n")
    walk = Walk(tmp_path)
    for line in commands:
        walk(line)

    state = roster_state()
    assert state is not None and state.consortium_id == "acme-aml"
    assert [m.bank_id for m in state.active_members()] == ["alpha", "beta", "gamma"]
    epoch = KeyEpoch.objects.get()
    assert state.key_epochs == (epoch.fingerprint,)
    policy = RoundPolicy.objects.get(active=True)
    assert (policy.name, policy.version, policy.local_epochs) == ("fraud", 1, 2)
    assert state.is_policy_approved("fraud", 1, policy.as_snapshot().digest())
    for bank in Bank.objects.all():
        assert bank.signing_public_key == state.signing_key_of(bank.slug)
        assert (tmp_path / bank.slug / "credential").stat().st_mode & 0o777 == 0o600
    assert Round.objects.filter(number=1, policy=policy, key_epoch=epoch).exists()
    assert walk.started == [f"{slug}/node.toml" for slug in ("alpha", "beta", "gamma")]

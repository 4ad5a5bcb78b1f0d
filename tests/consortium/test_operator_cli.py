"""The operator's management commands: each succeeds on good input and names the problem on bad."""

from __future__ import annotations

import json
import re
import stat
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from bank_node.keys import agreement_keygen, signing_keygen
from tests.conftest import PARAMS, Ckks

pytestmark = pytest.mark.django_db


def run(*args: Any) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _context_files(tmp_path: Path, ckks: Ckks) -> Path:
    (tmp_path / "consortium.pub").write_bytes(ckks.public_bytes)
    (tmp_path / "ckks_params.json").write_text(json.dumps(PARAMS.to_dict()))
    return tmp_path / "consortium.pub"


def _policy_file(tmp_path: Path, body: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


POLICY_TOML = """\
name = "fraud"
local_epochs = 3
batch_size = 128
learning_rate = 0.002
fedprox_mu = 0.01
min_banks = 3
deadline_seconds = 600
max_rounds = 4
max_consecutive_failures = 2
normalize_features = false
dp_target_epsilon = 8.0
dp_delta = 1e-6
dp_max_grad_norm = 1.5
secure_aggregation = "v1"
aggregate_checkers = 0

[model_spec]
kind = "mlp"
hidden = [8]
seed = 3
loss = "bce"
"""


# --- bank_onboard ---------------------------------------------------------------------------


def test_bank_onboard_prints_the_credential_once_and_stores_only_its_hash():
    from consortium.members.credentials import credential_hash
    from consortium.members.models import Bank

    out = run("bank_onboard", "alpha", "--name", "Alpha Bank")
    credential = out.strip().splitlines()[-1]
    bank = Bank.objects.get(slug="alpha")
    assert bank.name == "Alpha Bank" and bank.credential_hash == credential_hash(credential)
    assert out.count(credential) == 1


def test_bank_onboard_writes_the_credential_to_a_file_only_its_owner_can_read(tmp_path: Path):
    from consortium.members.credentials import credential_hash
    from consortium.members.models import Bank

    path = tmp_path / "alpha.credential"
    out = run("bank_onboard", "alpha", "--credential-file", str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    credential = path.read_text().strip()
    assert Bank.objects.get(slug="alpha").credential_hash == credential_hash(credential)
    assert credential not in out


def test_bank_onboard_refuses_a_duplicate_slug_and_leaves_no_credential_file(tmp_path: Path):
    run("bank_onboard", "alpha")
    path = tmp_path / "again.credential"
    with pytest.raises(CommandError, match="'alpha' already exists"):
        run("bank_onboard", "alpha", "--credential-file", str(path))
    assert not path.exists()


def test_bank_onboard_never_overwrites_an_existing_credential_file(tmp_path: Path):
    from consortium.members.models import Bank

    path = tmp_path / "credential"
    path.write_text("an older credential\n")
    with pytest.raises(CommandError, match="exists; refusing to overwrite"):
        run("bank_onboard", "alpha", "--credential-file", str(path))
    assert path.read_text() == "an older credential\n"
    assert not Bank.objects.filter(slug="alpha").exists()


def test_bank_onboard_registers_a_signing_key_file_and_refuses_a_bad_one(tmp_path: Path):
    from consortium.members.models import Bank

    public = signing_keygen(tmp_path / "alpha")
    run("bank_onboard", "alpha", "--signing-key-file", str(tmp_path / "alpha" / "signing.pub"))
    assert Bank.objects.get(slug="alpha").signing_public_key == public
    (tmp_path / "bad.pub").write_text("not a key")
    with pytest.raises(CommandError, match="signing_public_key must be a base64"):
        run("bank_onboard", "beta", "--signing-key-file", str(tmp_path / "bad.pub"))


# --- key_epoch_register ---------------------------------------------------------------------


def test_key_epoch_register_reads_the_public_context_file_and_its_parameters(
    tmp_path: Path, ckks: Ckks
):
    from consortium.rounds.models import KeyEpoch

    out = run("key_epoch_register", "--context-file", str(_context_files(tmp_path, ckks)))
    epoch = KeyEpoch.objects.get()
    assert epoch.fingerprint == ckks.fingerprint and ckks.fingerprint in out
    assert bytes(epoch.public_context) == ckks.public_bytes


def test_key_epoch_register_names_a_missing_context_file_and_the_fix(tmp_path: Path):
    with pytest.raises(CommandError, match=r"nope\.pub: cannot read .* `bank-node keygen`"):
        run("key_epoch_register", "--context-file", str(tmp_path / "nope.pub"))


def test_key_epoch_register_refuses_a_file_that_is_not_a_public_context(tmp_path: Path, ckks: Ckks):
    path = _context_files(tmp_path, ckks)
    path.write_bytes(b"certainly not a TenSEAL context")
    with pytest.raises(CommandError, match=r"consortium\.pub: key epoch not registered"):
        run("key_epoch_register", "--context-file", str(path))


def test_key_epoch_register_names_the_line_of_broken_parameters(tmp_path: Path, ckks: Ckks):
    path = _context_files(tmp_path, ckks)
    (tmp_path / "ckks_params.json").write_text('{\n  "poly_modulus_degree": ,\n}')
    with pytest.raises(CommandError, match=r"ckks_params.json, line 2 column \d+: .* not JSON"):
        run("key_epoch_register", "--context-file", str(path))


def test_key_epoch_register_refuses_a_second_registration_of_the_same_context(
    tmp_path: Path, ckks: Ckks
):
    path = _context_files(tmp_path, ckks)
    run("key_epoch_register", "--context-file", str(path))
    with pytest.raises(CommandError, match="already registered"):
        run("key_epoch_register", "--context-file", str(path))


# --- policy_create / policy_activate --------------------------------------------------------


def test_policy_create_reads_every_field_from_toml(tmp_path: Path):
    from consortium.rounds.models import RoundPolicy

    out = run("policy_create", "--file", str(_policy_file(tmp_path, POLICY_TOML)))
    policy = RoundPolicy.objects.get(name="fraud")
    assert "fraud v1 created" in out and not policy.active
    assert (policy.local_epochs, policy.batch_size, policy.max_rounds) == (3, 128, 4)
    assert policy.deadline.total_seconds() == 600 and policy.dp_target_epsilon == 8.0
    assert policy.model_spec["hidden"] == [8] and policy.secure_aggregation == "v1"
    assert (policy.max_consecutive_failures, policy.dp_delta) == (2, 1e-6)


def test_policy_create_reads_yaml_and_activates_a_new_version(tmp_path: Path):
    from consortium.rounds.models import RoundPolicy

    run("policy_create", "--file", str(_policy_file(tmp_path, POLICY_TOML)))
    yaml_body = "name: fraud\nlocal_epochs: 1\ndp_target_epsilon: null\nmodel_spec:\n  kind: mlp\n  hidden: [4]\n  seed: 1\n"
    path = _policy_file(tmp_path, yaml_body, "policy.yaml")
    out = run("policy_create", "--file", str(path), "--activate")
    policy = RoundPolicy.objects.get(name="fraud", version=2)
    assert policy.active and policy.local_epochs == 1 and policy.dp_target_epsilon is None
    assert "fraud v2 is active" in out


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'name = "fraud"\nlocal_epoks = 2\n',
            r"policy.toml, line 2: unknown policy field 'local_epoks'",
        ),
        ('name = "fraud"\nlocal_epochs = "two"\n', r"line 2: local_epochs must be a whole number"),
        ('name = "fraud"\nlocal_epochs = 2.5\n', r"line 2: local_epochs must be a whole number"),
        ('name = "fraud"\nnormalize_features = 1\n', r"line 2: normalize_features must be true"),
        ('name = "fraud"\ndeadline_seconds = 0\n', r"line 2: deadline_seconds must be at least 1"),
        ('name = "fraud"\nmodel_spec = "mlp"\n', r"line 2: model_spec must be a table"),
        ("local_epochs = 2\n", r"policy.toml: the policy needs a name"),
        ('name = "fraud"\nlocal_epochs = \n', r"policy.toml: not valid TOML: .*line 2"),
        ('name = "fraud"\nmin_banks = 2\n', r"not created: min_banks.*at least 3.*line 2"),
    ],
)
def test_policy_create_names_the_file_the_line_and_the_field_it_refuses(
    tmp_path: Path, body: str, message: str
):
    from consortium.rounds.models import RoundPolicy

    with pytest.raises(CommandError, match=message):
        run("policy_create", "--file", str(_policy_file(tmp_path, body)))
    assert not RoundPolicy.objects.exists()


def test_policy_create_refuses_a_file_it_cannot_read_or_whose_format_it_cannot_tell(
    tmp_path: Path,
):
    with pytest.raises(CommandError, match=r"missing.toml: cannot read the policy file"):
        run("policy_create", "--file", str(tmp_path / "missing.toml"))
    with pytest.raises(CommandError, match=r"policy.json: name the file .toml, .yaml or .yml"):
        run("policy_create", "--file", str(_policy_file(tmp_path, "{}", "policy.json")))
    bad_yaml = _policy_file(tmp_path, "name: fraud\n  local_epochs: [\n", "bad.yaml")
    with pytest.raises(CommandError, match=r"bad.yaml, line \d+: not valid YAML"):
        run("policy_create", "--file", str(bad_yaml))
    twice = _policy_file(tmp_path, "name: fraud\nmax_rounds: 3\nmax_rounds: 30\n", "twice.yml")
    with pytest.raises(CommandError, match=r"twice.yml, line 3: .*'max_rounds' is written twice"):
        run("policy_create", "--file", str(twice))


def test_policy_activate_switches_versions_and_names_a_missing_one(tmp_path: Path):
    from consortium.rounds.models import RoundPolicy

    path = _policy_file(tmp_path, POLICY_TOML)
    run("policy_create", "--file", str(path), "--activate")
    run("policy_create", "--file", str(path))
    run("policy_activate", "fraud", "2")
    assert list(RoundPolicy.objects.filter(active=True).values_list("version", flat=True)) == [2]
    with pytest.raises(CommandError, match="policy 'fraud' v9 does not exist"):
        run("policy_activate", "fraud", "9")


# --- genesis_draft / roster_propose / roster_export / consortium_status ---------------------


def _founder_keys(tmp_path: Path, slugs: tuple[str, ...]) -> list[str]:
    for slug in slugs:
        signing_keygen(tmp_path / slug)
        agreement_keygen(tmp_path / slug)
    return [f"--bank={slug}={tmp_path / slug}" for slug in slugs]


def test_genesis_draft_writes_a_charter_of_the_founders_keys_epoch_and_policies(
    tmp_path: Path, ckks: Ckks
):
    from governance import parse_version_json

    run("key_epoch_register", "--context-file", str(_context_files(tmp_path, ckks)))
    run("policy_create", "--file", str(_policy_file(tmp_path, POLICY_TOML)))
    banks = _founder_keys(tmp_path, ("alpha", "beta", "gamma"))
    out_file = tmp_path / "genesis-draft.json"
    args = ["--consortium-id", "acme", "--policy", "fraud:1", "--out", str(out_file)]
    run("genesis_draft", *banks, *args, "--propose")
    charter = parse_version_json(out_file.read_bytes()).change.charter  # type: ignore[union-attr]
    assert [m.bank_id for m in charter.members] == ["alpha", "beta", "gamma"]
    assert (
        charter.members[0].signing_key == (tmp_path / "alpha" / "signing.pub").read_text().strip()
    )
    assert charter.key_epochs == (ckks.fingerprint,)
    assert [(p.name, p.version) for p in charter.policies] == [("fraud", 1)]
    assert "pending version 0" in run("consortium_status")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--bank", "alpha"], r"--bank 'alpha': write SLUG=DIR"),
        (["--policy", "fraud:7"], r"--policy 'fraud:7': no such policy version"),
        (["--rule", "1/2"], r"strict majority"),
        (["--min-banks", "2"], r"min_banks must be at least 3"),
    ],
)
def test_genesis_draft_names_what_is_wrong(
    tmp_path: Path, ckks: Ckks, extra: list[str], message: str
):
    run("key_epoch_register", "--context-file", str(_context_files(tmp_path, ckks)))
    banks = _founder_keys(tmp_path, ("alpha", "beta", "gamma"))
    out = str(tmp_path / "draft.json")
    with pytest.raises(CommandError, match=message):
        run("genesis_draft", *banks, *extra, "--consortium-id", "acme", "--out", out)


def test_genesis_draft_names_a_founder_whose_key_file_is_missing_or_not_a_key(tmp_path: Path):
    banks = _founder_keys(tmp_path, ("alpha", "beta", "gamma"))
    (tmp_path / "gamma" / "agreement.pub").unlink()
    args = ["--consortium-id", "acme", "--key-epoch", "ab" * 32, "--out", str(tmp_path / "d")]
    with pytest.raises(CommandError, match=r"gamma/agreement.pub: cannot read .*signing-keygen"):
        run("genesis_draft", *banks, *args)
    (tmp_path / "gamma" / "agreement.pub").write_text("bm90IGEga2V5\n")
    with pytest.raises(CommandError, match=r"--bank 'gamma=.*agreement_key"):
        run("genesis_draft", *banks, *args)


def test_genesis_draft_without_a_registered_key_epoch_says_to_register_one(tmp_path: Path):
    banks = _founder_keys(tmp_path, ("alpha", "beta", "gamma"))
    with pytest.raises(CommandError, match=r"no key epoch is registered: run .*key_epoch_register"):
        run("genesis_draft", *banks, "--consortium-id", "acme", "--out", str(tmp_path / "d"))


def test_roster_propose_refuses_bad_json_an_unknown_kind_and_a_change_before_genesis(
    tmp_path: Path,
):
    path = tmp_path / "change.json"
    path.write_text('{"kind": "approve_policy",\n "policy": }')
    with pytest.raises(CommandError, match=r"change.json, line 2 column \d+: .* not JSON"):
        run("roster_propose", "--file", str(path))
    path.write_text('["approve_policy"]')
    with pytest.raises(CommandError, match=r"change.json: a roster change is a JSON object"):
        run("roster_propose", "--file", str(path))
    path.write_text(json.dumps({"kind": "register_key_epoch", "fingerprint": "ab" * 32}))
    with pytest.raises(CommandError, match="no roster genesis is in force yet"):
        run("roster_propose", "--file", str(path))


def test_roster_export_refuses_a_version_that_is_missing_or_not_yet_in_force(
    tmp_path: Path, ckks: Ckks
):
    out = str(tmp_path / "genesis.json")
    with pytest.raises(CommandError, match="roster version 0 does not exist"):
        run("roster_export", "--out", out)
    run("key_epoch_register", "--context-file", str(_context_files(tmp_path, ckks)))
    banks = _founder_keys(tmp_path, ("alpha", "beta", "gamma"))
    draft = str(tmp_path / "draft.json")
    run("genesis_draft", *banks, "--consortium-id", "acme", "--out", draft)
    run("roster_propose", "--file", draft)
    with pytest.raises(CommandError, match=r"still pending \(missing: alpha, beta, gamma\)"):
        run("roster_export", "--out", out)


def test_consortium_status_shows_members_epochs_policies_and_no_round(tmp_path: Path, ckks: Ckks):
    run("bank_onboard", "alpha", "--name", "Alpha Bank")
    run("key_epoch_register", "--context-file", str(_context_files(tmp_path, ckks)))
    run("policy_create", "--file", str(_policy_file(tmp_path, POLICY_TOML)), "--activate")
    out = run("consortium_status")
    assert "alpha" in out and "Alpha Bank" in out and "no signing key yet" in out
    assert "roster: no genesis in force" in out and ckks.fingerprint in out
    assert re.search(r"fraud v1\s+active\s+sha256", out) and "round in flight: none" in out


def test_policy_create_help_lists_every_field_with_its_default(capsys: pytest.CaptureFixture[str]):
    from consortium.rounds.policy_file import FILE_FIELDS

    with pytest.raises(SystemExit):
        call_command("policy_create", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert all(f"{name} = " in text for name in FILE_FIELDS)
    assert "deadline_seconds = 1800" in text and "local_epochs = 2" in text

"""`bank-node init` and the config reference: every field documented, output that loads."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from bank_node.cli import main
from bank_node.config import FIELD_REFERENCE, ConfigError, Guardrails, NodeConfig, load_config
from bank_node.config_reference import BEGIN, END, entries, markdown_table, node_toml

ROOT = Path(__file__).resolve().parents[2]


def _dotted_fields(cls: type, prefix: str = "") -> set[str]:
    names: set[str] = set()
    for field in dataclasses.fields(cls):
        names.add(prefix + field.name)
        if dataclasses.is_dataclass(field.default):
            names |= _dotted_fields(type(field.default), f"{prefix}{field.name}.")
    return names


def test_the_reference_names_every_field_of_the_config_and_nothing_else():
    assert set(FIELD_REFERENCE) == _dotted_fields(NodeConfig)
    assert all(meaning.strip() for _, meaning in FIELD_REFERENCE.values())


def test_every_required_or_unset_field_has_an_example_value():
    for entry in entries():
        if (entry.required or entry.default is None) and not entry.table:
            assert entry.example, entry.name
            tomllib.loads(f"x = {entry.example}")  # the example is valid TOML


def test_docs_node_config_holds_the_generated_table():
    doc = (ROOT / "docs" / "node-config.md").read_text()
    start, end = doc.index(BEGIN), doc.index(END) + len(END)
    assert doc[start:end] == markdown_table(), (
        "docs/node-config.md is stale: run python -m bank_node.config_reference docs/node-config.md"
    )


def test_init_writes_a_file_that_loads_back_with_every_default(tmp_path: Path, capsys):
    out = tmp_path / "node.toml"
    assert main(["init", "--out", str(out)]) == 0
    config = load_config(out)
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(NodeConfig)
        if f.default is not dataclasses.MISSING
    }
    for name, default in defaults.items():
        assert getattr(config, name) == default, name
    assert config.guardrails == Guardrails()
    assert config.bank == "my-bank" and config.data_file == tmp_path / "transactions.csv"
    assert '"config"' in capsys.readouterr().out


def test_init_comments_every_field_with_its_meaning_and_its_default(tmp_path: Path):
    text = node_toml()
    assert "# poll_interval_seconds = 2.0" in text and "# min_cohort = 3" in text
    assert "# Seconds between two polls of the portal." in text
    assert "\n[guardrails]\n" in text
    # every top-level field comes before the first table, or TOML would put it inside it
    head = text.split("[guardrails]")[0]
    for entry in entries():
        if "." not in entry.name and not entry.table:
            assert f"{entry.key} = " in head, entry.name


def test_init_fills_the_fields_given_on_the_command_line(tmp_path: Path):
    out = tmp_path / "alpha.toml"
    argv = ["init", "--out", str(out), "--bank", "alpha", "--portal-url", "http://127.0.0.1:8000"]
    assert main([*argv, "--genesis-file", "genesis.json"]) == 0
    config = load_config(out)
    assert (config.bank, config.portal_url) == ("alpha", "http://127.0.0.1:8000")
    assert config.genesis_file == tmp_path / "genesis.json"


def test_init_never_overwrites_a_file_without_force(tmp_path: Path, capsys):
    out = tmp_path / "node.toml"
    out.write_text("# mine\n")
    assert main(["init", "--out", str(out)]) == 2
    assert out.read_text() == "# mine\n" and "pass --force" in capsys.readouterr().err
    assert main(["init", "--out", str(out), "--force"]) == 0
    assert load_config(out).bank == "my-bank"


def test_init_refuses_a_value_the_node_would_refuse_and_leaves_no_file(tmp_path: Path, capsys):
    out = tmp_path / "node.toml"
    assert main(["init", "--out", str(out), "--portal-url", "http://portal.example"]) == 2
    assert not out.exists() and "use https://" in capsys.readouterr().err


def _with(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(node_toml() + text)
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            "poll_interval_secs = 3\n",
            r"unknown field 'poll_interval_secs': did you mean 'poll_interval_seconds'\?",
        ),
        (
            "frobnicate = 1\n",
            r"unknown field 'frobnicate': the fields are allow_unpinned_roster, bank",
        ),
    ],
)
def test_an_unknown_field_is_refused_with_the_nearest_name_and_the_reference(
    tmp_path: Path, edit: str, message: str
):
    text = node_toml().replace("# Bank node configuration", edit + "# Bank node configuration", 1)
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value) and "docs/node-config.md" in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('bank = "my-bank"', "bank = 7", r"bank must be a non-empty string in quotes"),
        ('data_file = "transactions.csv"', "data_file = []", r"data_file must be a non-empty"),
        ('data_file = "transactions.csv"', "", r"missing field\(s\): data_file; `bank-node init`"),
    ],
)
def test_a_wrong_or_missing_field_is_refused_naming_the_file_the_field_and_the_fix(
    tmp_path: Path, old: str, new: str, message: str
):
    path = tmp_path / "node.toml"
    path.write_text(node_toml().replace(old, new))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))


def test_a_command_names_the_first_missing_file_the_field_and_what_belongs_there(
    tmp_path: Path, capsys
):
    config = tmp_path / "node.toml"
    assert main(["init", "--out", str(config), "--portal-url", "http://127.0.0.1:1"]) == 0
    steps = [
        ("credential", "credential_file = .* no such file; put the API credential .*bank_onboard"),
        ("signing.key", "signing_key_file = .* no such file; put this bank's signing.key"),
        ("consortium.secret", "secret_context_file = .* no such file; .*bank-node keygen"),
        ("ckks_params.json", "ckks_params_file = .* no such file; .*ckks_params.json"),
    ]
    for name, message in steps:
        capsys.readouterr()
        assert main(["register", "--config", str(config)]) == 2
        assert re.search(message, capsys.readouterr().err), message
        (tmp_path / name).write_text("x")


def test_roster_commands_name_a_missing_signing_key_file(tmp_path: Path, capsys):
    config = tmp_path / "node.toml"
    assert main(["init", "--out", str(config), "--genesis-file", "genesis.json"]) == 0
    (tmp_path / "credential").write_text("cbk_x\n")
    capsys.readouterr()
    assert main(["roster", "show", "--config", str(config)]) == 2
    assert "signing_key_file = " in capsys.readouterr().err

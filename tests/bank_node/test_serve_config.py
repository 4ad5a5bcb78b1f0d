"""The [serve] table of the node config, and `bank-node serve` refusing to start without a token."""

from __future__ import annotations

from pathlib import Path

import pytest

from bank_node.cli import main
from bank_node.config import ConfigError, load_config
from bank_node.serve_config import DEFAULT_MAX_BATCH, DEFAULT_PORT, SERVE_READERS, ServeConfig
from tests.bank_node.serve_helpers import write_node_config

BASE = (
    'portal_url = "http://127.0.0.1:9"\nbank = "alpha"\ncredential_file = "c"\n'
    'signing_key_file = "s"\nsecret_context_file = "x"\nckks_params_file = "p"\n'
    'data_file = "d.csv"\nstate_dir = "state"\n'
)


def _load(tmp_path: Path, serve: str) -> ServeConfig:
    path = tmp_path / "node.toml"
    path.write_text(BASE + "\n[serve]\n" + serve)
    return load_config(path).serve


def test_without_a_serve_table_the_defaults_hold(tmp_path: Path):
    path = tmp_path / "node.toml"
    path.write_text(BASE)
    serve = load_config(path).serve
    assert (serve.host, serve.port, serve.max_batch) == ("127.0.0.1", DEFAULT_PORT, 1000)
    assert serve.token_file is None and serve.model_dir is None
    assert DEFAULT_MAX_BATCH == 1000


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path):
    serve = _load(tmp_path, 'token_file = "secrets/token"\nmodel_dir = "m"\nport = 9000\n')
    assert serve.token_file == tmp_path / "secrets" / "token"
    assert serve.model_dir == tmp_path / "m" and serve.port == 9000


@pytest.mark.parametrize(
    ("line", "words"),
    [("port = 0", "serve.port must be a port number"),
     ("port = true", "serve.port must be a port number"),
     ("max_batch = 0", "serve.max_batch must be a whole number >= 1"),
     ('host = ""', "serve.host must be a non-empty string"),
     ("max_bacth = 5", "did you mean 'max_batch'?")],
)  # fmt: skip
def test_a_bad_serve_value_is_named(tmp_path: Path, line: str, words: str):
    with pytest.raises(ConfigError, match=words):
        _load(tmp_path, line + "\n")


def test_every_serve_field_has_a_reader():
    assert set(SERVE_READERS) == set(ServeConfig.__dataclass_fields__)


def test_serve_refuses_to_start_without_a_token_file(tmp_path: Path, capsys):
    config = write_node_config(tmp_path, tmp_path / "data.csv")
    config.write_text(config.read_text().replace('token_file = "serve.token"\n', ""))
    assert main(["serve", "--config", str(config), "--port", "0"]) == 2
    assert "serve.token_file is not set" in capsys.readouterr().err


def test_serve_refuses_a_short_token(tmp_path: Path, capsys):
    config = write_node_config(tmp_path, tmp_path / "data.csv")
    (tmp_path / "serve.token").write_text("short\n")
    assert main(["serve", "--config", str(config), "--port", "0"]) == 2
    assert "use 16+" in capsys.readouterr().err

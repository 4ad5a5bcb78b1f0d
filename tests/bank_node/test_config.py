"""The node's config refuses a portal it would talk to in the clear."""

from __future__ import annotations

from pathlib import Path

import pytest

from bank_node.config import ConfigError, load_config

REST = (
    'bank = "alpha"\ncredential_file = "credential"\nsigning_key_file = "signing.key"\n'
    'secret_context_file = "consortium.secret"\nckks_params_file = "ckks_params.json"\n'
    'data_file = "data.csv"\nstate_dir = "state"\n'
)


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f'portal_url = "{url}"\n{REST}')
    return path


@pytest.mark.parametrize(
    "url",
    [
        "https://portal.consortium.example",
        "http://127.0.0.1:8000",
        "http://localhost:8000/",
        "http://[::1]:8000",
    ],
)
def test_https_and_plain_http_to_this_machine_are_accepted(tmp_path: Path, url: str):
    assert load_config(_config(tmp_path, url)).portal_url == url


@pytest.mark.parametrize(
    "url",
    ["http://portal.consortium.example", "http://10.0.0.5:8000", "http://localhost.evil.test"],
)
def test_plain_http_to_another_host_is_refused_naming_the_field_and_the_fix(
    tmp_path: Path, url: str
):
    with pytest.raises(ConfigError, match=r"portal_url .* plain http .* use https://"):
        load_config(_config(tmp_path, url))


@pytest.mark.parametrize("url", ["ftp://portal.example", "portal.example", "https://"])
def test_a_portal_url_that_is_not_a_web_address_is_refused(tmp_path: Path, url: str):
    with pytest.raises(ConfigError, match="portal_url must look like https://"):
        load_config(_config(tmp_path, url))

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


def _with(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f'portal_url = "https://portal.example"\n{REST}{extra}')
    return path


def test_without_a_guardrails_table_the_safe_defaults_apply(tmp_path: Path):
    config = load_config(_with(tmp_path, ""))
    rails = config.guardrails
    assert (rails.min_cohort, rails.dp_required, rails.epsilon_ceiling) == (3, False, None)
    assert config.genesis_file is None and config.report_metrics is False


def test_guardrails_and_the_genesis_file_are_read_and_typed(tmp_path: Path):
    extra = (
        'genesis_file = "genesis.json"\nreport_metrics = true\n[guardrails]\nmin_cohort = 4\n'
        "dp_required = true\nepsilon_ceiling = 8\nmax_rounds_per_day = 6\n"
        f'max_model_parameters = 100000\naccepted_key_epochs = ["{"ab" * 32}"]\n'
    )
    config = load_config(_with(tmp_path, extra))
    assert config.genesis_file == tmp_path / "genesis.json" and config.report_metrics is True
    rails = config.guardrails
    assert (rails.min_cohort, rails.dp_required, rails.epsilon_ceiling) == (4, True, 8.0)
    assert (rails.max_rounds_per_day, rails.max_model_parameters) == (6, 100000)
    assert rails.accepted_key_epochs == ("ab" * 32,)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("min_cohort = 2", "min_cohort must be at least 3"),
        ("epsilon_ceiling = 0", "epsilon_ceiling must be > 0"),
        ("dp_required = 1", "dp_required must be true or false"),
        ('accepted_key_epochs = ["nope"]', "64-hex key epoch fingerprints"),
        ("max_rounds_per_day = 0", "max_rounds_per_day must be a whole number >= 1"),
        ("min_cohrt = 4", r"unknown field \[guardrails\] 'min_cohrt': did you mean 'min_cohort'\?"),
    ],
)
def test_a_bad_guardrail_is_refused_naming_the_field(tmp_path: Path, table: str, message: str):
    with pytest.raises(ConfigError, match=message):
        load_config(_with(tmp_path, f"[guardrails]\n{table}\n"))

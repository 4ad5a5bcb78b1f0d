"""Files the portal creates are private; production settings send HSTS; passwords are checked."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from audit.portal_key import portal_signing_key
from consortium.settings import private_file

ROOT = Path(__file__).resolve().parents[2]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _settings_in_a_fresh_process(var_dir: Path, **env: str) -> dict[str, Any]:
    """Import consortium.settings with the embedded defaults under ``var_dir``."""
    script = (
        "import json, consortium.settings as s; print(json.dumps({n: getattr(s, n, None) for n "
        "in ['SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD', "
        "'SECURE_PROXY_SSL_HEADER']}))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**clean, "CONSORTIUM_VAR_DIR": str(var_dir), "PYTHONPATH": str(ROOT), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_the_embedded_database_and_secret_key_are_created_readable_by_the_owner_only(tmp_path):
    var_dir = tmp_path / "var"
    _settings_in_a_fresh_process(var_dir)
    assert _mode(var_dir) == 0o700
    assert _mode(var_dir / "secret_key") == 0o600
    assert _mode(var_dir / "portal.sqlite3") == 0o600


def test_a_private_file_that_exists_is_left_as_it_is(tmp_path):
    path = tmp_path / "key"
    private_file(path, b"first")
    private_file(path, b"second")
    assert path.read_bytes() == b"first" and _mode(path) == 0o600


def test_the_generated_portal_signing_key_is_private(settings, tmp_path):
    settings.PORTAL_SIGNING_KEY_FILE = tmp_path / "keys" / "portal.pem"
    settings.PORTAL_SIGNING_KEY_GENERATE = True
    portal_signing_key()
    assert _mode(tmp_path / "keys") == 0o700
    assert _mode(tmp_path / "keys" / "portal.pem") == 0o600


def test_production_settings_send_hsts_and_trust_the_ingress_for_https(tmp_path):
    values = _settings_in_a_fresh_process(tmp_path, DJANGO_SECURE_COOKIES="true")
    assert values == {
        "SECURE_HSTS_SECONDS": 365 * 24 * 3600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }
    preload = _settings_in_a_fresh_process(
        tmp_path, DJANGO_SECURE_COOKIES="true", DJANGO_HSTS_PRELOAD="true"
    )
    assert preload["SECURE_HSTS_PRELOAD"] is True


def test_the_loopback_demo_over_http_sends_no_hsts(tmp_path):
    # HSTS on http://127.0.0.1 would make browsers refuse the demo portal afterwards.
    values = _settings_in_a_fresh_process(tmp_path)
    assert values["SECURE_HSTS_SECONDS"] is None
    assert values["SECURE_PROXY_SSL_HEADER"] is None


def test_the_four_standard_password_validators_are_on():
    names = [v["NAME"].rsplit(".", 1)[1] for v in django_settings.AUTH_PASSWORD_VALIDATORS]
    assert names == [
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "command, password, reason",
    [
        ("create_operator", "123456789012", "entirely numeric"),
        ("create_auditor", "password1234", "too common"),
        ("create_operator", "olivia-operator", "too similar"),
    ],
)
def test_the_account_commands_refuse_a_weak_password(tmp_path, command, password, reason):
    secret = tmp_path / "pw"
    secret.write_text(password)
    with pytest.raises(CommandError, match=reason):
        call_command(command, "olivia-operator", "--password-file", str(secret))

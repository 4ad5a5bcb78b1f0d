"""Playwright against Debian's chromium, a live portal server, and screenshots as artifacts.

Never ``playwright install``: the browser is the system's ``/usr/bin/chromium``
(scripts/system-packages.txt). Screenshots go to ``test-artifacts/portal/``; with
``PORTAL_SCREENSHOTS_DIR`` set (see scripts in tests/portal/browser/test_screenshots.py)
the representative ones are also written there, e.g. to ``docs/screenshots``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

# Playwright's sync API keeps an asyncio loop running in this thread; Django then refuses
# ORM calls from the test body ("async context") although they are plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts" / "portal"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make system-deps)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict[str, Any]) -> dict[str, Any]:
    # A laptop screen; the portal must read well at this size.
    return {**browser_context_args, "viewport": {"width": 1440, "height": 900}}


@pytest.fixture(autouse=True)
def _no_browser_errors(page: Any) -> Any:
    """Fail a test whose pages log an error: a script error, a refused resource, a CSP block."""
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield
    # A refused form (400), a forbidden page (403) or a missing one (404) is answered on
    # purpose, and Chromium logs its status; nothing else may appear.
    expected = re.compile(r"Failed to load resource: .* status of 40[034]")
    unexpected = [e for e in errors if not expected.match(e)]
    assert not unexpected, unexpected


@pytest.fixture
def shot(page: Any) -> Any:
    """``shot(name)``: save a full-page screenshot under test-artifacts/portal/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    extra = os.environ.get("PORTAL_SCREENSHOTS_DIR")

    def take(name: str, *, publish: bool = False, full_page: bool = True) -> Path:
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        if publish and extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(extra) / f"{name}.png"), full_page=full_page)
        return path

    return take


@pytest.fixture
def sign_in(page: Any, live_server: Any) -> Any:
    """``sign_in(username, password)`` through the sign-in form, as a person would."""

    def go(username: str, password: str) -> None:
        page.goto(f"{live_server.url}/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()

    return go


# --- letting the live server's database be emptied between tests on SQLite -------------------
#
# A live server needs transactional tests: each one ends with Django's ``flush``. On SQLite
# that empties tables with DELETE, which the audit app's append-only triggers refuse
# (PostgreSQL uses TRUNCATE, which they allow). So on SQLite, and only in the test
# database, the triggers are set aside just before the flush and put back right after it:
# every test body runs with the trail append-only, as in production.

_set_aside: dict[str, str] = {}


def _audit_triggers(connection: Any) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name LIKE 'audit%'"
        )
        return dict(cursor.fetchall())


def _restore_triggers(connection: Any) -> None:
    missing = set(_set_aside) - set(_audit_triggers(connection))
    with connection.cursor() as cursor:
        for name in sorted(missing):
            cursor.execute(_set_aside[name])


@pytest.fixture(scope="module", autouse=True)
def _audit_triggers_restored_after_the_last_flush(django_db_blocker: Any) -> Any:
    yield
    from django.db import connection

    if _set_aside and connection.vendor == "sqlite":
        with django_db_blocker.unblock():
            _restore_triggers(connection)


@pytest.fixture(autouse=True)
def _audit_trail_flushable(live_server: Any) -> Any:
    from django.db import connection

    if connection.vendor != "sqlite":
        yield
        return
    _restore_triggers(connection)
    yield
    triggers = _audit_triggers(connection)
    _set_aside.update(triggers)
    with connection.cursor() as cursor:
        for name in triggers:
            cursor.execute(f'DROP TRIGGER "{name}"')

"""Which tests a pass runs: ``--database-tests-only`` keeps those that touch a database.

``make test`` runs the suite on PostgreSQL, then again on SQLite so that both backends keep
working. A test that touches no database (CKKS maths, models, a bank node against a stand-in
portal, scoring files) proves nothing new the second time, and some take 15-20 s each
(``tests/bank_node/test_score_stream.py``). With ``--database-tests-only`` (the SQLite pass)
a test is deselected unless it can reach a database:

- it asks pytest-django for database access (``db``, ``transactional_db``, ``live_server``,
  the ``django_db`` mark, or a fixture of ours that unblocks ``django_db_blocker``) --
  pytest-django refuses every query of a test without one, so a test without one cannot
  query the test database in its own process; or
- it is marked ``database``: it reaches a database through processes it starts (a portal
  of its own), which the fixture closure cannot show; or
- it is an ``e2e`` test (those start portals; ``-m "not e2e"`` already decides them).

Every deselected test still runs once, in the PostgreSQL pass, which has no such option.
The hooks are registered by ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import pytest

OPTION = "--database-tests-only"

# pytest-django's fixtures that open the test database (``db`` and ``transactional_db`` go
# through ``_django_db_helper``, and so does the ``django_db`` mark).
DATABASE_FIXTURES = frozenset({"_django_db_helper", "django_db_setup", "live_server"})

# What a fixture of ours asks for to open the database itself. pytest-django's own autouse
# fixtures ask for it too, on every test, so only fixtures under tests/ count.
BLOCKER = "django_db_blocker"

# Marks of tests that reach a database by a route the fixture closure does not show.
DATABASE_MARKS = ("django_db", "database", "e2e")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        OPTION,
        action="store_true",
        default=False,
        help="deselect the tests that touch no database (they ran in the PostgreSQL pass)",
    )


def touches_a_database(item: pytest.Item) -> bool:
    """True if ``item`` may query a database (see the module docstring for the rule)."""
    if DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    if any(item.get_closest_marker(name) is not None for name in DATABASE_MARKS):
        return True
    info = getattr(item, "_fixtureinfo", None)
    for definitions in info.name2fixturedefs.values() if info else ():
        if any(d.baseid.startswith("tests") and BLOCKER in d.argnames for d in definitions):
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption(OPTION):
        return
    kept = [item for item in items if touches_a_database(item)]
    dropped = [item for item in items if not touches_a_database(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept

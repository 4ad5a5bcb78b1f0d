"""The SQLite pass's rule (tests/passes.py), applied to these tests' own items."""

from __future__ import annotations

from typing import Any

import pytest

from tests.passes import touches_a_database


def test_a_test_without_database_access_is_left_to_the_postgresql_pass(
    request: pytest.FixtureRequest,
) -> None:
    assert not touches_a_database(request.node)


def test_a_test_with_the_db_fixture_runs_in_the_sqlite_pass_too(
    db: Any, request: pytest.FixtureRequest
) -> None:
    assert touches_a_database(request.node)


@pytest.mark.django_db
def test_a_test_with_the_django_db_mark_runs_in_the_sqlite_pass_too(
    request: pytest.FixtureRequest,
) -> None:
    assert touches_a_database(request.node)


@pytest.mark.database
def test_a_test_marked_as_starting_its_own_database_process_runs_there_too(
    request: pytest.FixtureRequest,
) -> None:
    assert touches_a_database(request.node)

"""Fixtures for the governance tests: a founded four-bank consortium."""

from __future__ import annotations

import pytest
from portal_helpers import founded, founders  # noqa: F401  (portal fixtures, for test_portal_*)
from roster_helpers import Ceremony, found


@pytest.fixture(scope="module")
def ceremony() -> Ceremony:
    return found()

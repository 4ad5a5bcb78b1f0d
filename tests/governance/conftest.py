"""Fixtures for the governance tests: a founded four-bank consortium."""

from __future__ import annotations

import pytest
from roster_helpers import Ceremony, found


@pytest.fixture(scope="module")
def ceremony() -> Ceremony:
    return found()

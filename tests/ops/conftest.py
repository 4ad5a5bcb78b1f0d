"""Operations tests reuse the live portal of the end-to-end tests."""

from tests.e2e.conftest import live_portal  # noqa: F401 - a fixture, used by name

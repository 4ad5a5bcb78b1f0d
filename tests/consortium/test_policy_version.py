"""``GET policies/{name}/versions/{version}``: one policy version's snapshot, for the banks."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import PolicySnapshot
from tests.conftest import Persona

pytestmark = pytest.mark.django_db


def test_a_bank_gets_a_policy_versions_snapshot_with_the_digest_the_roster_approves(
    client: Any, policy: Any, bank_alpha: Persona
) -> None:
    response = client.get(f"/api/v1/policies/{policy.name}/versions/1", **bank_alpha.auth())
    assert response.status_code == 200
    snapshot = PolicySnapshot.from_dict(response.json())
    assert snapshot == policy.as_snapshot()
    assert snapshot.digest() == policy.as_snapshot().digest()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("default/versions/2", "policy 'default' has no version 2 (its versions: 1)"),
        ("fraud/versions/1", "policy 'fraud' does not exist"),
    ],
)
def test_an_unknown_policy_version_is_a_404_naming_the_policy(
    client: Any, policy: Any, bank_alpha: Persona, path: str, message: str
) -> None:
    response = client.get(f"/api/v1/policies/{path}", **bank_alpha.auth())
    assert response.status_code == 404
    assert response.json()["message"] == message


def test_a_policy_version_is_not_served_to_an_anonymous_caller(client: Any, policy: Any) -> None:
    response = client.get(f"/api/v1/policies/{policy.name}/versions/1")
    assert response.status_code == 401

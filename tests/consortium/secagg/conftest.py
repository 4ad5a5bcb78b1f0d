"""Fixtures for the secure-aggregation API: a founded four-bank roster on real keys, a v2
policy, and round rows put straight into a phase (the scheduler's side is tested elsewhere)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from consortium.rounds.models import Round, RoundState
from consortium.rounds.services import policy_create
from protocol import secagg_threshold
from tests.consortium.secagg.secagg_helpers import (
    BANKS,
    Dealer,
    binding_of,
    deal,
    mask_keys_body,
    put_keys,
)
from tests.governance.portal_helpers import Founder, found, onboard

MIN_BANKS = 3


@pytest.fixture
def banks(db: Any, settings: Any, client: Client, ckks: Any) -> dict[str, Founder]:
    """Four onboarded banks that founded the consortium; the CKKS epoch is in force."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    user = User.objects.create_user("olivia", password="operator-password-1")
    user.groups.add(Group.objects.get_or_create(name="operators")[0])
    founders = {slug: onboard(slug) for slug in BANKS}
    found(client, founders, epochs=(ckks.fingerprint,))
    return founders


@pytest.fixture
def v2_policy(db: Any) -> Any:
    return _policy("masked", "v2")


@pytest.fixture
def v1_policy(db: Any) -> Any:
    """The legacy protocol (not activated: under a roster that needs the banks' approval)."""
    return _policy("legacy", "v1")


def _policy(name: str, protocol: str) -> Any:
    return policy_create(
        name=name,
        actor="test",
        min_banks=MIN_BANKS,
        deadline=timedelta(minutes=20),
        normalize_features=False,
        model_spec={"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"},
        secure_aggregation=protocol,
    )


def round_row(policy: Any, epoch: Any, number: int, state: str, **fields: Any) -> Round:
    now = timezone.now()
    return Round.objects.create(
        number=number,
        policy=policy,
        policy_snapshot=policy.snapshot(),
        key_epoch=epoch,
        vector_length=policy.vector_length,
        state=state,
        opened_at=now,
        deadline_at=now + timedelta(minutes=20),
        phase_deadline_at=now + timedelta(minutes=5),
        **fields,
    )


@pytest.fixture
def sharing_round(banks: dict[str, Founder], epoch: Any, v2_policy: Any) -> Round:
    """Round 1 of a v2 policy, in its sharing phase, the four banks its cohort."""
    cohort = sorted(banks)
    return round_row(
        v2_policy,
        epoch,
        1,
        RoundState.SHARING,
        cohort=cohort,
        threshold=secagg_threshold(len(cohort), MIN_BANKS),
    )


@pytest.fixture
def dealers(banks: dict[str, Founder], sharing_round: Round) -> dict[str, Dealer]:
    """Each bank's round secrets, dealt among the cohort (kept by its own node)."""
    threshold = sharing_round.threshold
    assert threshold is not None
    return {
        slug: deal(banks[slug], sharing_round.cohort, threshold) for slug in sharing_round.cohort
    }


@pytest.fixture
def unmasking_round(
    client: Client, banks: dict[str, Founder], sharing_round: Round, dealers: dict[str, Dealer]
) -> Round:
    """Every bank posted its keys through the API; then delta dropped before uploading."""
    binding = binding_of(sharing_round)
    for slug, dealer in dealers.items():
        answer = put_keys(client, 1, banks[slug], mask_keys_body(dealer, banks, binding))
        assert answer.status_code == 200, answer.content
    Round.objects.filter(pk=sharing_round.pk).update(
        state=RoundState.UNMASKING,
        survivors=["alpha", "beta", "gamma"],
        dropped=["delta"],
    )
    sharing_round.refresh_from_db()
    return sharing_round

"""Fixtures for v2 rounds: four founding banks with real keys, their stored roster, a v2
policy and key epoch the roster approves, and the banks' side of a round."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from consortium.governance.selectors import policy_digest, roster_state
from consortium.governance.services import roster_genesis_propose
from consortium.rounds.models import Round, RoundPolicy
from consortium.rounds.services import policy_create
from governance import genesis_version
from he.ring import SealKit, kit_from_tenseal
from tests.conftest import PARAMS, Ckks
from tests.consortium.secagg_rounds.masked_banks import MaskedRound
from tests.governance.portal_helpers import FOUNDER_IDS, Founder, charter, onboard
from tests.governance.roster_helpers import NOW, signed

MODEL = {"kind": "mlp", "hidden": [4], "seed": 1, "loss": "bce"}


def masked_policy_create(name: str = "masked", **fields: Any) -> RoundPolicy:
    values: dict[str, Any] = {
        "min_banks": 3,
        "deadline": timedelta(minutes=20),
        "max_rounds": 3,
        "normalize_features": False,
        "model_spec": MODEL,
        "secure_aggregation": "v2",
        **fields,
    }
    return policy_create(name=name, actor="test", activate=True, **values)


def roster_store(members: dict[str, Founder], ckks: Ckks, *policies: RoundPolicy) -> None:
    """Every founder signs a genesis that puts the epoch and ``policies`` in force."""
    approved = tuple((p.name, p.version, policy_digest(p)) for p in policies)
    draft = genesis_version(charter(members, epochs=(ckks.fingerprint,), policies=approved), NOW)
    version = signed(draft, *(m.keys for m in members.values()))
    roster_genesis_propose(version_json=version.to_dict(), actor="test")
    assert roster_state() is not None


@pytest.fixture
def members(db: Any) -> dict[str, Founder]:
    return {bank_id: onboard(bank_id) for bank_id in FOUNDER_IDS}


@pytest.fixture
def masked_policy(db: Any, epoch: Any) -> RoundPolicy:
    return masked_policy_create()


@pytest.fixture
def governed(members: dict[str, Founder], ckks: Ckks, masked_policy: RoundPolicy) -> Any:
    roster_store(members, ckks, masked_policy)
    return members


@pytest.fixture(scope="session")
def secret_kit(ckks: Ckks) -> SealKit:
    return kit_from_tenseal(ckks.secret, PARAMS)


def play(rnd: Round, members: dict[str, Founder], kit: SealKit) -> MaskedRound:
    return MaskedRound(rnd, members, kit)

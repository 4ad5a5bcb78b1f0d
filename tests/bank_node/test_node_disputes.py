"""A node never trains on a base or statistics round it refused or that the banks dispute."""

from __future__ import annotations

from pathlib import Path

import pytest

from bank_node.checks import Refused, check_dependencies
from bank_node.keys import ckks_keygen
from governance import RegisterKeyEpoch, apply
from he.params import CkksParams
from tests.bank_node.roster_fakes import FakePortal, approve_policy, policy, training_round
from tests.bank_node.test_node_refuses import _agent
from tests.governance.roster_helpers import Ceremony, found, signed


@pytest.fixture(scope="module")
def ckks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ckks")
    ckks_keygen(out, CkksParams())
    return out


@pytest.fixture
def ceremony() -> Ceremony:
    return found()


SNAPSHOT = policy()
OFFERED = training_round(SNAPSHOT, number=4, base_round=3, stats_round=1)


def _published(number: int, *, disputed: bool = False, kind: str = "training"):
    return training_round(SNAPSHOT, number=number, state="published", kind=kind, disputed=disputed)


def test_a_round_on_undisputed_rounds_it_did_not_refuse_passes():
    check_dependencies(OFFERED, {"2": "refused earlier"}, [_published(3), _published(1)])


@pytest.mark.parametrize(("refused", "what"), [("3", "base"), ("1", "statistics")])
def test_a_round_on_a_round_this_bank_refused_is_refused(refused, what):
    with pytest.raises(Refused) as caught:
        check_dependencies(OFFERED, {refused: "the count slot is negative"}, [])
    assert caught.value.reason == "base_refused"
    assert f"its {what} round {refused} was refused by this bank" in caught.value.message
    assert "the count slot is negative" in caught.value.message


@pytest.mark.parametrize(("disputed", "what"), [(3, "base"), (1, "statistics")])
def test_a_round_on_a_round_the_portal_reports_disputed_is_refused(disputed, what):
    deps = [_published(n, disputed=n == disputed) for n in (3, 1)]
    with pytest.raises(Refused) as caught:
        check_dependencies(OFFERED, {}, deps)
    assert caught.value.reason == "base_disputed"
    assert f"its {what} round {disputed} is disputed" in caught.value.message


def test_a_disputed_round_the_offered_round_does_not_use_is_no_reason_to_refuse():
    check_dependencies(OFFERED, {}, [_published(2, disputed=True)])


@pytest.mark.parametrize("how", ["disputed", "refused"])
def test_the_node_sits_out_a_round_built_on_a_bad_base_with_a_signed_objection(
    tmp_path, ckks_dir, ceremony, how
):
    portal = FakePortal()
    agent = _agent(tmp_path, ckks_dir, ceremony, portal)
    fp = agent.keys.fingerprint
    approved = approve_policy(ceremony, ceremony.state, SNAPSHOT)
    state = apply(ceremony.state, approved)
    epoch = signed(
        ceremony.propose(RegisterKeyEpoch(fp), state),
        ceremony["alpha"],
        ceremony["beta"],
        ceremony["gamma"],
    )
    portal.versions = [approved.to_dict(), epoch.to_dict()]
    portal.current = training_round(
        SNAPSHOT, number=4, base_round=3, stats_round=1, key_epoch=fp, base_key_epoch=fp
    )
    portal.detail = {
        1: _published(1, kind="statistics"),
        3: _published(3, disputed=how == "disputed"),
    }
    if how == "refused":
        agent.state.refused["3"] = "the count slot is negative"
    agent.step()
    assert portal.uploads == []
    assert portal.reasons() == [f"base_{how}"]
    assert how in agent.state.skipped["4"]

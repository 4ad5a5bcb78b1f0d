"""Four agents play a v2 sketch round through ``Agent.step``: noised sketches in, the others' out.

The same relaying fake portal as ``test_secagg_agents``: delta advertises and drops, the
other three upload their noised counterparty sketches, reveal, and each keeps the sum less
its own contribution, with the round's as-of dates, in its state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bank_node.data import load_transactions
from bank_node.sketch_round import (
    bank_sigma,
    others_sketch_file,
    own_sketch_file,
    spec_dates,
    spec_sensitivity,
    spec_shape,
    spec_sigma,
)
from bank_node.state import NodeState, state_file
from he.errors import HEError
from he.keys import load_public_context
from he.ring import kit_from_tenseal
from models.counterparty_sketch import SKETCH_FEATURE_NAMES, build_sketches
from models.dp_budget import history_of
from models.features import FEATURE_NAMES
from protocol import PolicySnapshot, RoundInfo, SketchSpec
from simulation.world import generate_world
from tests.bank_node.secagg_nodes import Federation, manifest_for, portal_correction, portal_sum
from tests.bank_node.test_secagg_agents import NUMBER, PARAMS, RelayPortal, _agents, _roster
from tests.governance.roster_helpers import found
from tests.protocol.messages import policy_dict, round_dict, sketch_dict

pytestmark = pytest.mark.filterwarnings("ignore")
# The policy reads the feature set's columns, then the cross-bank ones.
WIDTH = len(FEATURE_NAMES) + len(SKETCH_FEATURE_NAMES)
SKETCH = sketch_dict(as_of=["2022-09-15", "2022-10-01"], depth=3, width=256, window_days=14)
SURVIVORS = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, n_banks=4, preset="tiny", seed=3)
    return out


def _sketch_round(fingerprint: str, sketch: dict[str, Any] = SKETCH) -> RoundInfo:
    policy = policy_dict(
        counterparty_sketch=sketch, normalize_features=False, min_banks=3, n_features=WIDTH
    )
    spec = SketchSpec.from_dict(sketch)
    fields = {
        "number": NUMBER,
        "kind": "sketch",
        "state": "sharing",
        "policy": policy,
        "key_epoch": fingerprint,
        "vector_length": spec.values + 2,
    }
    return RoundInfo.from_dict(
        round_dict(**fields, base_round=None, base_key_epoch=None, stats_round=None)
    )


def _play_sketch_round(
    ckks: Any, tmp_path: Path, world: Path, *, substitute: str | None = None
) -> tuple[dict[str, Any], RelayPortal]:
    """The sketch round to publication (delta drops after advertising its key); with
    ``substitute``, the operator publishes that bank's own upload as "the aggregate"."""
    ceremony = found()
    rnd = _sketch_round(ckks.fingerprint)
    roster = _roster(ceremony, ckks.fingerprint, PolicySnapshot.from_dict(rnd.policy.to_dict()))
    portal = RelayPortal(tmp_path, rnd)
    agents = _agents(tmp_path, world, ckks, ceremony, roster, portal)
    for agent in agents.values():
        agent.step()
    portal.state("open")
    for bank in SURVIVORS:
        agents[bank].step()
    assert sorted(portal.uploads) == list(SURVIVORS)
    portal.state("unmasking")
    for bank in SURVIVORS:
        agents[bank].step()
    reveals = [portal.reveals[b] for b in SURVIVORS]
    fed = Federation(dataclasses.replace(ceremony, state=roster), portal.rnd, {}, portal.posts)
    public = kit_from_tenseal(load_public_context(ckks.public_bytes, PARAMS), PARAMS)
    terms = portal_correction(fed, reveals, SURVIVORS, ("delta",))
    digest = portal_sum(fed, public, portal.uploads, terms, portal.aggregate)
    if substitute is not None:
        portal.aggregate.write_bytes(portal.uploads[substitute].read_bytes())
        digest = hashlib.sha256(portal.aggregate.read_bytes()).hexdigest()
    manifest = manifest_for(fed, portal.uploads, digest, SURVIVORS, ("delta",), reveals)
    portal.state("published", manifest=manifest, aggregate_digest=digest)
    portal.published = True
    for bank in SURVIVORS:
        agents[bank].step()
    return agents, portal


def test_agents_sum_noised_sketches_and_each_keeps_what_the_others_added(ckks, tmp_path, world):
    agents, portal = _play_sketch_round(ckks, tmp_path, world)

    assert portal.objections == []
    own = {b: np.load(own_sketch_file(tmp_path / b, NUMBER)) for b in SURVIVORS}
    for bank in SURVIVORS:
        kept = agents[bank].state.sketches[str(NUMBER)]
        assert kept["as_of"] == SKETCH["as_of"]
        others = np.load(others_sketch_file(tmp_path / bank, NUMBER))
        expected = sum(own[b] for b in SURVIVORS if b != bank)
        assert np.max(np.abs(others - expected)) < 1e-3  # the CKKS error only
        assert stat.S_IMODE(others_sketch_file(tmp_path / bank, NUMBER).stat().st_mode) == 0o600
    # Each upload carries its bank's noised sketches and a count of one bank.
    plain = np.load(tmp_path / "alpha" / f"plain-round-{NUMBER}.npy")
    np.testing.assert_array_equal(plain[:-2], own["alpha"].ravel())
    assert plain[-2] == 1.0


def test_a_bank_sketch_is_noised_at_the_policys_scale(ckks, tmp_path, world):
    ceremony = found()
    rnd = dataclasses.replace(_sketch_round(ckks.fingerprint), state="open")
    roster = _roster(ceremony, ckks.fingerprint, PolicySnapshot.from_dict(rnd.policy.to_dict()))
    agent = _agents(tmp_path, world, ckks, ceremony, roster, RelayPortal(tmp_path, rnd))["alpha"]
    values, count = agent.sketches.contribution(rnd)
    assert count == 1
    spec = SketchSpec.from_dict(SKETCH)
    # Most cells of a 256-wide sketch hold small counts: their spread is the noise's.
    residual = values - np.rint(values)
    assert values.size == spec.values
    sigma = spec_sigma(spec)
    # epsilon 1, delta 1e-6; the two 14-day windows (to 09-15 and 10-01) do not overlap, so
    # a flow is in one sketch at most: 4.9 x sqrt(4 channels x depth 3 x 1 date), about 17.
    assert sigma == pytest.approx(math.sqrt(2 * math.log(1.25e6)) * math.sqrt(12))
    assert np.std(values) >= 0.8 * sigma
    assert np.abs(residual).max() > 0  # noise, not integer counts


@pytest.mark.parametrize("split", [1, 2])
def test_each_bank_adds_its_share_of_the_noise_and_counts_the_whole_mechanism(
    ckks, tmp_path, world, split
):
    """``noise_split`` t: the bank's own noise is sigma / sqrt(t), so that t contributors'
    noise together is the mechanism's; its accountant records the mechanism (the guarantee
    the spec states), not its share."""
    ceremony = found()
    sketch = {**SKETCH, "noise_split": split}
    rnd = dataclasses.replace(_sketch_round(ckks.fingerprint, sketch), state="open")
    roster = _roster(ceremony, ckks.fingerprint, PolicySnapshot.from_dict(rnd.policy.to_dict()))
    agent = _agents(tmp_path, world, ckks, ceremony, roster, RelayPortal(tmp_path, rnd))["alpha"]
    spec = SketchSpec.from_dict(sketch)
    values, _ = agent.sketches.contribution(rnd)
    frame = load_transactions(agent.config.data_file)
    exact = build_sketches(
        frame, agent.sketches.key(ckks.fingerprint), spec_shape(spec), spec_dates(spec)
    )
    noise = values - exact.ravel()
    assert bank_sigma(spec) == pytest.approx(spec_sigma(spec) / math.sqrt(split))
    # 6,144 cells: the sample's spread is within a few percent of the bank's share.
    assert np.std(noise) == pytest.approx(bank_sigma(spec), rel=0.05)
    assert abs(np.mean(noise)) < 0.1 * bank_sigma(spec)
    z = spec_sigma(spec) / spec_sensitivity(spec)
    assert history_of(agent.state.dp_accountant) == [(pytest.approx(z), 1.0, 1)]


def test_a_sketch_rounds_noise_is_counted_in_the_banks_privacy_budget(ckks, tmp_path, world):
    ceremony = found()
    rnd = dataclasses.replace(_sketch_round(ckks.fingerprint), state="open")
    roster = _roster(ceremony, ckks.fingerprint, PolicySnapshot.from_dict(rnd.policy.to_dict()))
    agent = _agents(tmp_path, world, ckks, ceremony, roster, RelayPortal(tmp_path, rnd))["alpha"]
    spec = SketchSpec.from_dict(SKETCH)
    agent.sketches.contribution(rnd)
    z = spec_sigma(spec) / spec_sensitivity(spec)
    assert history_of(agent.state.dp_accountant) == [(pytest.approx(z), 1.0, 1)]
    first = agent.state.epsilon
    # RDP's conversion is tighter than the classical bound the noise was sized with.
    assert first is not None and 0.5 * spec.epsilon < first <= spec.epsilon
    agent.sketches.contribution(rnd)  # noised again (a retry): spent again
    assert agent.state.epsilon is not None and agent.state.epsilon > first
    saved = NodeState.load(state_file(agent.config.state_dir))
    assert saved.epsilon == agent.state.epsilon


def _training_round(fingerprint: str) -> RoundInfo:
    policy = policy_dict(counterparty_sketch=SKETCH, normalize_features=False, n_features=WIDTH)
    fields = {"number": NUMBER + 1, "state": "open", "policy": policy, "key_epoch": fingerprint}
    return RoundInfo.from_dict(
        round_dict(**fields, base_round=None, base_key_epoch=None, stats_round=None)
    )


def test_a_sketch_policy_trains_on_six_more_columns_from_the_kept_sketch(ckks, tmp_path, world):
    ceremony = found()
    rnd = _sketch_round(ckks.fingerprint)
    roster = _roster(ceremony, ckks.fingerprint, PolicySnapshot.from_dict(rnd.policy.to_dict()))
    agent = _agents(tmp_path, world, ckks, ceremony, roster, RelayPortal(tmp_path, rnd))["alpha"]
    training = _training_round(ckks.fingerprint)
    with pytest.raises(HEError, match="no published sketch round"):
        agent.round_data(training)
    spec = SketchSpec.from_dict(SKETCH)
    shape = (len(spec.as_of), 4, spec.depth, spec.width)
    others = np.zeros(shape)
    others[:, 0] = 40.0  # every account: 40 labelled flows in, seen by the other members
    agent.sketches._checked = lambda number, epoch: (others.ravel() / 3, 3.0)
    agent.sketches.conclude(dataclasses.replace(rnd, state="published"))
    base, data = agent.data(training.policy), agent.round_data(training)
    assert data.x_train.shape == (base.x_train.shape[0], base.x_train.shape[1] + 6)
    np.testing.assert_array_equal(data.x_test[:, : base.x_test.shape[1]], base.x_test)
    column = len(FEATURE_NAMES) + SKETCH_FEATURE_NAMES.index("xb_dst_labelled_in")
    # The world starts on 2022-09-01: rows before the first date (09-15) see no sketch.
    values = np.unique(data.x_train[:, column])
    np.testing.assert_allclose(values, [0.0, np.log1p(40) / np.log1p(1000)], rtol=1e-6)
    assert data.x_test[:, column].min() > 0  # the test period lies after the first date


def test_a_substituted_sketch_aggregate_is_refused_and_no_bank_keeps_a_sketch(
    ckks, tmp_path, world
):
    # The operator publishes alpha's own masked upload as the sum of everyone's sketches.
    agents, portal = _play_sketch_round(ckks, tmp_path, world, substitute="alpha")
    # Every surviving node recomputes the sum, refuses it and says so in a signed objection.
    objected = {(o["bank_id"], o["reason_code"]) for o in portal.objections}
    assert objected == {(bank, "aggregate_substituted") for bank in SURVIVORS}
    for bank in SURVIVORS:
        assert str(NUMBER) not in agents[bank].state.sketches
        assert not others_sketch_file(tmp_path / bank, NUMBER).exists()

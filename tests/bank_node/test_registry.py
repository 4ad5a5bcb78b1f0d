"""The node's model registry: versions with passports, the promotion policy, rollback, metrics."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from bank_node.config import ConfigError
from bank_node.passport import PASSPORT_FILE, feature_set_version
from bank_node.registry import ModelRegistry, PromotionRefused, UnknownVersion
from bank_node.registry_node import NodeRegistry
from bank_node.scoring_model import load_scoring_model
from tests.bank_node.registry_world import (
    EPOCH,
    TinyBank,
    gated,
    node_config,
    published,
    tiny_bank,
    ungated_policy,
)

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def bank() -> TinyBank:
    bank = tiny_bank()
    # What the tests below rely on, measured: noise ranks frauds far worse than training.
    assert bank.trained.auprc - bank.noise.auprc > 0.03
    return bank


class FakeClient:
    def __init__(self) -> None:
        self.reports: list[tuple[int, str]] = []

    def report_served_model(self, number: int, version: str) -> dict[str, Any]:
        self.reports.append((number, version))
        return {}


def _node(tmp_path: Path, bank: TinyBank, client: Any = None, **fields: Any) -> NodeRegistry:
    bank.normalization_into(tmp_path)
    return NodeRegistry(node_config(tmp_path, bank.data_file, **fields), client)


def _held(reason: str) -> float:
    return REGISTRY.get_sample_value("bank_node_model_versions_held_total", {"reason": reason}) or 0


def test_an_evaluated_model_is_stored_in_the_scoring_format_with_its_passport(tmp_path, bank):
    node = _node(tmp_path, bank)
    rnd = published(1, ungated_policy())
    node.evaluated(rnd, bank.trained.weights, bank.trained.threshold, bank.trained.metrics, None)

    version = tmp_path / "models" / "round-1"
    model = load_scoring_model(version)
    assert model.round == 1 and model.threshold == bank.trained.threshold
    assert model.normalizer is not None  # its normalisation file travelled with it
    assert np.allclose(np.load(version / "global_model.npy"), bank.trained.weights)
    passport = json.loads((version / PASSPORT_FILE).read_text())
    assert passport["policy"] == {
        "name": rnd.policy.name,
        "version": rnd.policy.version,
        "digest": rnd.policy.digest(),
    }
    assert passport["key_epoch"] == EPOCH and passport["epsilon"] == 1.5  # the signed figure
    assert passport["aggregate_digest"] == rnd.aggregate_digest
    assert passport["input_digests"] == {"alpha": "a1" * 32, "beta": "b2" * 32}
    assert passport["local_evaluation"]["auprc"] == pytest.approx(bank.trained.auprc)
    assert passport["consortium_evaluation"] is None and passport["adopted"] is True
    assert passport["feature_set"] == feature_set_version() and passport["held"] is None
    assert node.registry.promoted() == "round-1"  # the first adopted version: nothing to drop


def test_a_version_whose_local_auprc_drops_beyond_the_tolerance_is_held(tmp_path, bank, caplog):
    node = _node(tmp_path, bank)
    before = _held("local_drop")
    trained, noise = bank.trained, bank.noise
    node.evaluated(published(1, ungated_policy()), trained.weights, 0.5, trained.metrics, None)
    with caplog.at_level(logging.WARNING, logger="bank_node"):
        node.evaluated(published(2, ungated_policy()), noise.weights, 0.5, noise.metrics, None)

    assert node.registry.promoted() == "round-1"
    held = node.registry.passport("round-2")
    assert held.held == "local_drop" and "promotion_tolerance 0.02" in held.held_detail
    assert _held("local_drop") == before + 1
    assert "round-2 stored but not promoted" in caplog.text
    assert load_scoring_model(tmp_path).version == "round-1"


def test_a_drop_within_a_wider_tolerance_is_promoted(tmp_path, bank):
    drop = bank.trained.auprc - bank.noise.auprc
    node = _node(tmp_path, bank, promotion_tolerance=min(1.0, drop + 0.01))
    trained, noise = bank.trained, bank.noise
    node.evaluated(published(1, ungated_policy()), trained.weights, 0.5, trained.metrics, None)
    node.evaluated(published(2, ungated_policy()), noise.weights, 0.5, noise.metrics, None)
    assert node.registry.promoted() == "round-2"


def test_promote_refuses_a_dropped_version_unless_forced_and_rollback_goes_back(tmp_path, bank):
    node = _node(tmp_path, bank)
    trained, noise = bank.trained, bank.noise
    node.evaluated(published(1, ungated_policy()), trained.weights, 0.5, trained.metrics, None)
    node.evaluated(published(2, ungated_policy()), noise.weights, 0.5, noise.metrics, None)
    registry = node.registry

    with pytest.raises(PromotionRefused, match="round-2 not promoted: its local AUPRC"):
        registry.promote("round-2")
    assert registry.promoted() == "round-1"
    assert registry.promote("round-2", force=True).held is None
    assert registry.promoted() == "round-2"
    assert [e["how"] for e in registry.history()] == ["automatic", "forced"]

    assert registry.rollback() == "round-1" and registry.promoted() == "round-1"
    with pytest.raises(ConfigError, match="nothing to roll back to"):
        registry.rollback()
    # The history keeps everything, the rollback included.
    assert [e["how"] for e in registry.history()] == ["automatic", "forced", "rollback"]


def test_a_gated_version_waits_for_the_gate_and_a_rejected_one_is_never_promoted(tmp_path, bank):
    client = FakeClient()
    node = _node(tmp_path, bank, client, report_served_model=True)
    trained = bank.trained
    node.evaluated(published(1, gated()), trained.weights, 0.5, trained.metrics, None)
    assert node.registry.passport("round-1").held == "awaiting_gate"
    assert node.registry.promoted() is None and client.reports == []

    adopt = {"round": 2, "decision": "adopt", "aggregate_digest": "e2" * 32,
             "candidate_auprc": 0.61, "current_auprc": 0.4}  # fmt: skip
    node.decided(1, adopt)
    passport = node.registry.passport("round-1")
    assert passport.adopted and passport.consortium_auprc == 0.61
    assert passport.consortium_evaluation is not None
    assert passport.consortium_evaluation["aggregate_digest"] == "e2" * 32
    assert node.registry.promoted() == "round-1" and client.reports == [(1, "round-1")]

    reject = adopt | {"round": 4, "decision": "reject"}
    node.evaluated(published(3, gated()), trained.weights, 0.5, trained.metrics, reject)
    assert node.registry.passport("round-3").held == "rejected_by_gate"
    assert node.registry.promoted() == "round-1"
    with pytest.raises(PromotionRefused, match="gate rejected it"):
        node.registry.promote("round-3")


def test_the_served_model_is_reported_only_when_the_bank_opted_in(tmp_path, bank):
    client = FakeClient()
    node = _node(tmp_path, bank, client)  # report_served_model defaults to false
    trained = bank.trained
    node.evaluated(published(1, ungated_policy()), trained.weights, 0.5, trained.metrics, None)
    assert node.registry.promoted() == "round-1" and client.reports == []


def test_the_served_model_metrics_follow_the_promoted_pointer(tmp_path, bank):
    node = _node(tmp_path, bank)
    trained = bank.trained
    node.evaluated(published(5, ungated_policy()), trained.weights, 0.5, trained.metrics, None)
    node.evaluated(published(6, ungated_policy()), trained.weights, 0.5, trained.metrics, None)
    assert REGISTRY.get_sample_value("bank_node_served_model_round") == 6
    info = {"version": "round-6"}
    assert REGISTRY.get_sample_value("bank_node_served_model_info", info) == 1
    node.registry.rollback()  # as `bank-node models rollback` would, from another process
    assert REGISTRY.get_sample_value("bank_node_served_model_round") == 5
    assert REGISTRY.get_sample_value("bank_node_served_model_info", info) is None


def test_a_corrupt_passport_or_a_missing_version_is_a_clear_error(tmp_path, bank):
    node = _node(tmp_path, bank)
    trained = bank.trained
    node.evaluated(published(1, ungated_policy()), trained.weights, 0.5, trained.metrics, None)
    registry = ModelRegistry(tmp_path, 0.02)

    with pytest.raises(UnknownVersion, match=r"'round-9'.*the versions are: round-1"):
        registry.passport("round-9")
    (tmp_path / "models" / "round-1" / PASSPORT_FILE).write_text('{"version": "round-1"')
    with pytest.raises(ConfigError, match=r"passport\.json: not a model passport"):
        registry.passport("round-1")

    (tmp_path / "models" / "promoted").write_text("round-7\n")
    with pytest.raises(ConfigError, match=r"names version 'round-7'.*does not exist"):
        load_scoring_model(tmp_path)
    assert REGISTRY.get_sample_value("bank_node_served_model_round") == -1


def test_an_older_version_is_promoted_by_hand_only_within_the_tolerance(tmp_path, bank):
    node = _node(tmp_path, bank)
    trained, noise = bank.trained, bank.noise
    node.evaluated(published(1, ungated_policy()), noise.weights, 0.5, noise.metrics, None)
    node.evaluated(published(2, ungated_policy()), trained.weights, 0.5, trained.metrics, None)
    node.evaluated(published(3, ungated_policy()), trained.weights, 0.5, trained.metrics, None)
    registry = node.registry
    assert registry.promoted() == "round-3"  # each no worse than the one before

    assert registry.promote("round-2").version == "round-2"  # older, the same AUPRC
    with pytest.raises(PromotionRefused, match="round-1 not promoted: its local AUPRC"):
        registry.promote("round-1")
    assert registry.promoted() == "round-2"


def test_rollback_walks_back_through_the_promotions_one_at_a_time(tmp_path, bank):
    node = _node(tmp_path, bank)
    trained = bank.trained
    for number in (1, 2, 3):
        rnd = published(number, ungated_policy())
        node.evaluated(rnd, trained.weights, 0.5, trained.metrics, None)
    registry = node.registry
    assert registry.promoted() == "round-3"
    assert registry.rollback() == "round-2" and registry.rollback() == "round-1"
    registry.promote("round-3")
    assert registry.rollback() == "round-1"  # what was promoted before round-3, this time


def test_after_a_rollback_the_node_holds_the_next_adopted_version_until_a_person_promotes(
    tmp_path, bank, caplog
):
    node = _node(tmp_path, bank)
    trained = bank.trained
    for number in (1, 2):
        node.evaluated(
            published(number, ungated_policy()), trained.weights, 0.5, trained.metrics, None
        )
    assert node.registry.rollback(by="olivia") == "round-1"
    pin = node.registry.pin()
    assert pin is not None and (pin.version, pin.by) == ("round-1", "olivia")
    held_before = _held("pinned_by_rollback")

    # Round 3 is as good as round 1 (within any tolerance), and still not promoted.
    with caplog.at_level(logging.WARNING, logger="bank_node"):
        node.evaluated(published(3, ungated_policy()), trained.weights, 0.5, trained.metrics, None)
    passport = node.registry.passport("round-3")
    assert node.registry.promoted() == "round-1"
    assert passport.held == "pinned_by_rollback"
    assert f"round-1 pinned by rollback at {pin.at}, by olivia" in passport.held_detail
    assert "pinned by rollback" in caplog.text
    assert _held("pinned_by_rollback") == held_before + 1

    # A person's promotion lifts the pin; the next adopted version is promoted again.
    node.registry.promote("round-3", by="olivia")
    assert node.registry.pin() is None and node.registry.promoted() == "round-3"
    node.evaluated(published(4, ungated_policy()), trained.weights, 0.5, trained.metrics, None)
    assert node.registry.promoted() == "round-4"
    hows = [(e["how"], e.get("by")) for e in node.registry.history()]
    assert hows == [("automatic", None), ("automatic", None), ("rollback", "olivia"),
                    ("manual", "olivia"), ("automatic", None)]  # fmt: skip


def test_a_pinned_node_holds_a_version_its_gate_adopts_later(tmp_path, bank):
    node = _node(tmp_path, bank)
    trained = bank.trained
    adopt = {"round": 9, "decision": "adopt", "candidate_auprc": 0.6, "current_auprc": 0.5}
    for number in (1, 3):
        node.evaluated(published(number, gated()), trained.weights, 0.5, trained.metrics, adopt)
    node.registry.rollback(by="olivia")
    node.evaluated(published(5, gated()), trained.weights, 0.5, trained.metrics, None)
    assert node.registry.passport("round-5").held == "awaiting_gate"

    node.decided(5, adopt)  # the gate adopts it: without the pin it would be served now
    assert node.registry.passport("round-5").held == "pinned_by_rollback"
    assert node.registry.promoted() == "round-1"


def test_a_second_rollback_moves_the_pin_back_and_a_corrupt_pin_is_a_clear_error(tmp_path, bank):
    node = _node(tmp_path, bank)
    trained = bank.trained
    for number in (1, 2, 3):
        node.evaluated(
            published(number, ungated_policy()), trained.weights, 0.5, trained.metrics, None
        )
    node.registry.rollback(by="a")
    assert node.registry.rollback(by="b") == "round-1"
    pin = node.registry.pin()
    assert pin is not None and (pin.version, pin.by) == ("round-1", "b")

    (tmp_path / "models" / "pin.json").write_text("{")
    with pytest.raises(ConfigError, match=r"pin\.json: not a rollback pin"):
        node.registry.pin()

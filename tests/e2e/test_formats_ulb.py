"""ULB creditcard files federated end to end under the card-v1 feature set (real portal, CKKS)."""

from __future__ import annotations

import json

import pytest

from models.feature_sets import FEATURE_SETS
from simulation.formats import ulb_files
from tests.e2e.conftest import LivePortal
from tests.e2e.formats_federation import (
    federate,
    held_out_auprc,
    published_kinds,
    score_with_cli,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
SET = "card-v1"


@pytest.fixture(scope="module")
def federation(live_portal: LivePortal, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("ulb")
    files = ulb_files(work / "data", n_banks=3, rows=1500, seed=11)
    return federate(live_portal, work, files, SET, data_format="auto")


def test_a_statistics_and_a_training_round_are_published_with_all_three_card_banks(
    federation,
):
    banks = sorted(federation["banks"])
    assert published_kinds(federation) == [("statistics", banks, SET), ("training", banks, SET)]
    assert federation["policy"]["n_features"] == FEATURE_SETS[SET].n_features


def test_the_published_model_beats_the_fraud_base_rate_on_held_out_rows(federation):
    score, base_rate = held_out_auprc(federation, SET)
    assert score > base_rate, (score, base_rate)


def test_every_bank_scores_its_card_file_with_the_published_model(federation):
    for slug, lines in zip(federation["banks"], score_with_cli(federation), strict=True):
        rows = federation["files"][slug].read_text().splitlines()
        assert lines[0] == "line,score,alert,model_version,reasons" and len(lines) == len(rows)
        scores = [float(line.split(",")[1]) for line in lines[1:]]
        assert all(0.0 <= v <= 1.0 for v in scores) and len(set(scores)) > 10


def test_the_registry_passport_names_the_feature_set(federation):
    for home in federation["banks"].values():
        passport = json.loads(next((home / "state" / "models").glob("*/passport.json")).read_text())
        assert passport["feature_set_name"] == SET

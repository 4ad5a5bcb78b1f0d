"""`bank-node personalise`: the served model fine-tuned on the bank's rows, chosen on validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bank_node.cli import main
from bank_node.model_files import MODEL_META, MODEL_WEIGHTS
from bank_node.scoring_model import load_scoring_model
from bank_node.state import save_global_model
from bank_node.training import evaluate, local_data, model_from_vector
from models.nets import FraudMLP
from models.personalise import CANDIDATES
from models.vector import model_to_vector
from tests.bank_node.gate_nodes import N_FEATURES, SPEC
from tests.bank_node.registry_world import TinyBank, node_toml, published, tiny_bank, ungated_policy

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def bank() -> TinyBank:
    return tiny_bank()


def _node(tmp_path: Path, bank: TinyBank, weights: np.ndarray, threshold: float | None) -> Path:
    """A node whose served model is round 2 with ``weights``."""
    state = tmp_path / "state"
    bank.normalization_into(state)
    save_global_model(state, published(2, ungated_policy()), weights, threshold)
    return node_toml(tmp_path, bank.data_file)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out.strip().splitlines()[-1]) if code == 0 else {}), err


def test_an_untrained_model_is_fine_tuned_into_a_better_one_chosen_on_validation(
    tmp_path: Path, bank: TinyBank, capsys: pytest.CaptureFixture[str]
) -> None:
    # A served model at the policy's initial weights: fine-tuning beats it on validation,
    # so the node must not keep it, and the held-out figures must show the difference.
    start = model_to_vector(model_from_vector(SPEC, N_FEATURES, None))
    toml = _node(tmp_path, bank, start, None)
    save = tmp_path / "personal"
    code, out, _ = _run(capsys, "personalise", "--config", str(toml), "--save", str(save))
    assert code == 0
    assert out["round"] == 2 and set(out["val_auprc"]) == {c.name for c in CANDIDATES}
    assert out["choice"] != "global"
    assert out["val_auprc"][out["choice"]] == max(out["val_auprc"].values())
    # The global figures are the node's own evaluation of the served weights.
    untrained = model_from_vector(SPEC, N_FEATURES, start)
    data = local_data(bank.data_file).normalized(bank.normalizer)
    assert out["global"]["auprc"] == pytest.approx(evaluate(untrained, data)["auprc"])
    assert out["val_auprc"][out["choice"]] > out["val_auprc"]["global"]
    assert out["personalised"]["auprc"] > 2 * out["global"]["auprc"]
    # The saved model scores as the personalised figures say, through the scorers' loader.
    model = load_scoring_model(save)
    assert model.label == "personalised" and model.round == 2
    assert isinstance(model.net, FraudMLP)
    assert model.threshold == out["personalised"]["threshold"]
    assert evaluate(model.net, data)["auprc"] == pytest.approx(out["personalised"]["auprc"])
    meta = json.loads((save / MODEL_META).read_text())
    assert meta["personalised"]["choice"] == out["choice"]
    # The consortium's model in state_dir is untouched.
    assert np.array_equal(np.load(tmp_path / "state" / MODEL_WEIGHTS), start)


def test_the_chosen_candidate_is_the_best_on_validation_never_read_from_the_test_period(
    tmp_path: Path, bank: TinyBank, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = _node(tmp_path, bank, bank.trained.weights, bank.trained.threshold)
    code, out, _ = _run(capsys, "personalise", "--config", str(toml))
    assert code == 0 and out["saved"] is None
    best = max(out["val_auprc"].values())
    # Ties keep the earliest candidate (the model unchanged comes first).
    first_best = next(c.name for c in CANDIDATES if out["val_auprc"][c.name] == best)
    assert out["choice"] == first_best
    if out["choice"] == "global":
        assert out["personalised"] == out["global"]
    model = model_from_vector(SPEC, N_FEATURES, bank.trained.weights)
    data = local_data(bank.data_file).normalized(bank.normalizer)
    assert out["global"]["auprc"] == pytest.approx(evaluate(model, data)["auprc"])


def test_a_node_without_a_served_model_exits_2_saying_to_run_rounds_first(
    tmp_path: Path, bank: TinyBank, capsys: pytest.CaptureFixture[str]
) -> None:
    toml = node_toml(tmp_path, bank.data_file)
    (tmp_path / "state").mkdir()
    code, _, err = _run(capsys, "personalise", "--config", str(toml))
    assert code == 2
    assert "global_model.json does not exist" in err and "bank-node run" in err


@pytest.mark.parametrize("inside", ["state", "state/personal"])
def test_saving_into_the_state_dir_is_refused_and_the_global_model_is_unchanged(
    tmp_path: Path, bank: TinyBank, capsys: pytest.CaptureFixture[str], inside: str
) -> None:
    toml = _node(tmp_path, bank, bank.trained.weights, bank.trained.threshold)
    before = (tmp_path / "state" / MODEL_META).read_bytes()
    code, _, err = _run(
        capsys, "personalise", "--config", str(toml), "--save", str(tmp_path / inside)
    )
    assert code == 2 and "state_dir" in err and "--save" in err
    assert (tmp_path / "state" / MODEL_META).read_bytes() == before
    assert not (tmp_path / "state" / "personal").exists()

"""benchmarks/server_opt.py at tiny size: the columns it compares are the ones it names."""

from __future__ import annotations

import json
from types import ModuleType

import numpy as np
import pytest

from bank_node.training import LocalData

ROUNDS = 2
COLUMNS = [
    "fedavg", "fedavgm lr=1 m=0.5", "fedavg e1", "scaffold", "fedprox mu=0.01",
    "fedprox mu=0.01 tail=2", "fedprox mu=0.01 per-bank",
]  # fmt: skip


@pytest.fixture(scope="module")
def figures(server_opt: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("server-opt")
    argv = ["--preset", "tiny", "--banks", "2", "--seed", "3", "--rounds", str(ROUNDS),
            "--only", ",".join(COLUMNS), "--references", "--out", str(out)]  # fmt: skip
    assert server_opt.main(argv) == 0
    return json.loads((out / f"tiny-3-r{ROUNDS}.json").read_text())


def test_every_asked_column_has_a_validation_figure_after_each_round(figures: dict) -> None:
    assert sorted(figures["validation_auprc"]) == sorted(COLUMNS)  # in CONFIGS' order
    for name, values in figures["validation_auprc"].items():
        assert len(values) == ROUNDS, name
        assert all(0.0 < v <= 1.0 for v in values), name


def test_fedavgm_starts_as_fedavg_and_then_departs_from_it(figures: dict) -> None:
    # With an empty momentum buffer and server lr 1, FedAvgM's first step is the average.
    fedavg, fedavgm = (figures["validation_auprc"][n] for n in COLUMNS[:2])
    assert fedavgm[0] == fedavg[0]
    assert fedavgm[1] != fedavg[1]


def test_a_column_with_another_local_step_trains_its_own_updates(figures: dict) -> None:
    # The updates are cached per local step: one epoch a round is not two from round one.
    assert figures["validation_auprc"]["fedavg e1"][0] != figures["validation_auprc"]["fedavg"][0]


def test_scaffold_trains_as_fedavg_until_it_has_control_variates(figures: dict) -> None:
    # Round one has no c or c_i yet; round two trains with c - c_i from round one's base.
    fedavg, scaffold = (figures["validation_auprc"][n] for n in ("fedavg", "scaffold"))
    assert scaffold[0] == fedavg[0]
    assert scaffold[1] != fedavg[1]


def test_tail_averaging_scores_the_mean_of_the_last_models_and_trains_the_same_chain(
    figures: dict,
) -> None:
    # One model so far: the mean of one is that model; from round two it is a mean of two
    # different models, so the score departs though the chain trained is the same.
    plain, tail = (
        figures["validation_auprc"][n] for n in ("fedprox mu=0.01", "fedprox mu=0.01 tail=2")
    )
    assert tail[0] == plain[0]
    assert tail[1] != plain[1]


def test_weighing_every_bank_alike_is_not_the_row_weighted_average(figures: dict) -> None:
    # tiny's two banks hold different numbers of rows, so the very first average differs.
    rows, banks = (
        figures["validation_auprc"][n] for n in ("fedprox mu=0.01", "fedprox mu=0.01 per-bank")
    )
    assert banks[0] != rows[0]


def test_the_references_are_the_centralised_and_local_only_models(figures: dict) -> None:
    assert set(figures["references"]) == {"centralised", "local-only"}
    assert all(0.0 < v <= 1.0 for v in figures["references"].values())


def test_each_weighting_gives_the_average_its_own_counts(server_opt: ModuleType) -> None:
    def view(positives: int, rows: int) -> LocalData:
        y = np.zeros(rows, dtype=np.float32)
        y[:positives] = 1
        x = np.zeros((rows, 1), dtype=np.float32)
        return LocalData(x, y, x, y, x, y)

    views = [view(30, 1000), view(0, 50), view(5, 4000)]
    trained = [(np.full(2, float(i)), v.y_train.size) for i, v in enumerate(views)]

    def counts(**kind: bool) -> list[int]:
        config = server_opt.Config("c", {}, **kind)
        return [n for _, n in server_opt.weighed(config, trained, views)]

    assert counts() == [1000, 50, 4000]  # by rows: what a node sends
    assert counts(per_bank=True) == [1, 1, 1]
    assert counts(by_positives=True) == [30, 1, 5]  # a bank without positives still counts once

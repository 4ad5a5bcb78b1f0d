"""benchmarks/server_opt.py at tiny size: the columns it compares are the ones it names."""

from __future__ import annotations

import json
from types import ModuleType

import numpy as np
import pytest

from bank_node.training import LocalData, train_round

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


def test_feddyn_trains_as_fedprox_until_a_bank_has_state_and_then_keeps_its_own(
    server_opt: ModuleType,
) -> None:
    rng = np.random.default_rng(1)
    views = []
    for shift in (0.0, 1.0):
        x = rng.normal(shift, 1.0, size=(300, 4)).astype(np.float32)
        y = (x[:, 0] > shift + 0.8).astype(np.float32)
        views.append(LocalData(x, y, x, y, x, y))
    hyper = {"rounds": 2, "local_epochs": 1, "batch_size": 64, "learning_rate": 3e-3,
             "fedprox_mu": 0.03, "model_spec": {"kind": "mlp", "hidden": [8], "seed": 7}}  # fmt: skip
    policy = server_opt.replace(server_opt.policy_of(hyper), n_features=4)
    base = server_opt.initial_vector(policy.model_spec, 4)
    dyn = server_opt.DynUpdates(views)
    first = dyn(policy, base, 2)
    for (w, n), view, h in zip(first, views, dyn.own, strict=True):
        plain, _ = train_round(view, policy, base, seed=2)  # no state yet: FedProx exactly
        np.testing.assert_array_equal(w, plain)
        np.testing.assert_allclose(h, -0.03 * (w - base), rtol=1e-6)
        assert n == 300
    second = dyn(policy, first[0][0], 3)
    plain, _ = train_round(views[0], policy, first[0][0], seed=3)
    assert np.abs(second[0][0] - plain).max() > 1e-6  # its linear term now pulls

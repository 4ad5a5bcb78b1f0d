"""The server optimiser's chain at a node: a pure function of the adopted history, cached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bank_node.server_chain import ServerChain, cache_file, server_params
from models.nets import initial_vector
from models.server_opt import step
from protocol import RoundInfo
from tests.protocol.messages import manifest_dict, policy_dict, round_dict

SPEC = {"kind": "mlp", "hidden": [4], "seed": 3, "loss": "bce"}
FEATURES = 5
ADAM = {"server_optimizer": "fedadam", "server_lr": 0.05, "server_tau": 0.01}


def _round(number: int, base: int | None, **policy: Any) -> RoundInfo:
    fields = {"model_spec": SPEC, "n_features": FEATURES, "secure_aggregation": "v1"}
    return RoundInfo.from_dict(
        round_dict(
            number=number,
            state="published",
            policy=policy_dict(**fields, **({"normalize_features": False} | policy)),
            stats_round=None,
            base_round=base,
            base_key_epoch="ab" * 32 if base is not None else None,
            manifest=manifest_dict(round=number),
        )
    )


class History:
    """Published rounds and their averages, as ``PublishedModels`` would hand them over."""

    def __init__(self, rounds: list[RoundInfo]) -> None:
        start = initial_vector(SPEC, FEATURES)
        rng = np.random.default_rng(11)
        self.rounds = {r.number: r for r in rounds}
        self.averages = {r.number: start + rng.normal(0, 0.1, start.size) for r in rounds}
        self.fetched: list[int] = []

    def average_of(self, number: int, epoch: str) -> tuple[np.ndarray, RoundInfo]:
        self.fetched.append(number)
        return self.averages[number].copy(), self.rounds[number]

    def produced(self, chain: ServerChain, number: int) -> Any:
        return chain.produced(self.rounds[number], self.averages[number].copy())


def _chain(tmp_path: Path, name: str, history: History) -> ServerChain:
    (tmp_path / name).mkdir()
    return ServerChain(tmp_path / name, history.average_of)


def test_under_fedavg_the_model_is_the_average_and_nothing_is_fetched_or_cached(tmp_path):
    history = History([_round(1, None), _round(2, 1)])
    chain = _chain(tmp_path, "node", history)
    result = history.produced(chain, 2)
    assert result.weights.tobytes() == history.averages[2].tobytes()
    assert history.fetched == [] and not cache_file(chain.state_dir, 2).exists()


def test_the_model_is_the_optimisers_step_along_the_chain_of_bases(tmp_path):
    history = History([_round(1, None, **ADAM), _round(2, 1, **ADAM)])
    result = history.produced(_chain(tmp_path, "node", history), 2)
    params = server_params(history.rounds[1].policy)
    first, state = step(None, initial_vector(SPEC, FEATURES), history.averages[1], params)
    second, _ = step(state, first, history.averages[2], params)
    assert result.weights.tobytes() == second.tobytes()
    assert result.state.steps == 2


def test_two_nodes_with_the_same_history_produce_the_same_digest(tmp_path):
    history = History([_round(n, n - 1 if n > 1 else None, **ADAM) for n in range(1, 5)])
    a = history.produced(_chain(tmp_path, "a", history), 4)
    b = history.produced(_chain(tmp_path, "b", history), 4)
    assert a.digest == b.digest


def test_the_state_rebuilt_after_a_restart_equals_the_continuous_one(tmp_path):
    history = History([_round(n, n - 1 if n > 1 else None, **ADAM) for n in range(1, 5)])
    continuous = _chain(tmp_path, "node", history)
    for number in range(1, 5):  # a node that evaluated every round as it published
        last = history.produced(continuous, number)
    for number in range(1, 5):  # a restart that lost its cache: recomputed from aggregates
        cache_file(continuous.state_dir, number).unlink()
    rebuilt = history.produced(ServerChain(continuous.state_dir, history.average_of), 4)
    assert rebuilt.weights.tobytes() == last.weights.tobytes()
    assert rebuilt.state.m is not None and last.state.m is not None
    assert rebuilt.state.m.tobytes() == last.state.m.tobytes()
    assert rebuilt.state.v is not None and last.state.v is not None
    assert rebuilt.state.v.tobytes() == last.state.v.tobytes()


def test_a_restarted_node_reads_its_cache_instead_of_fetching_the_chain_again(tmp_path):
    history = History([_round(1, None, **ADAM), _round(2, 1, **ADAM)])
    chain = _chain(tmp_path, "node", history)
    first = history.produced(chain, 2)
    history.fetched.clear()
    again = history.produced(ServerChain(chain.state_dir, history.average_of), 2)
    assert history.fetched == [] and again.digest == first.digest


def test_a_rejected_candidate_does_not_advance_the_state(tmp_path):
    # 1 adopted; 2 a candidate from 1 the gate rejected; 3 trained from 1 again.
    rounds = [_round(1, None, **ADAM), _round(2, 1, **ADAM), _round(3, 1, **ADAM)]
    history = History(rounds)
    saw_the_candidate = _chain(tmp_path, "evaluated-2", history)
    history.produced(saw_the_candidate, 2)  # the candidate's model, scored by the gate
    after = history.produced(saw_the_candidate, 3)
    never_saw_it = history.produced(_chain(tmp_path, "fresh", history), 3)
    assert after.state.steps == 2  # round 1's step, then round 3's: 2 never counted
    assert after.weights.tobytes() == never_saw_it.weights.tobytes()


def test_a_change_of_optimiser_between_policies_starts_a_fresh_state(tmp_path):
    momentum = {"server_optimizer": "fedavgm", "server_lr": 1.0, "server_momentum": 0.5}
    history = History([_round(1, None, **ADAM), _round(2, 1, **momentum)])
    result = history.produced(_chain(tmp_path, "node", history), 2)
    base = history.produced(_chain(tmp_path, "base", history), 1).weights
    fresh, _ = step(None, base, history.averages[2], server_params(history.rounds[2].policy))
    assert result.weights.tobytes() == fresh.tobytes() and result.state.steps == 1


def test_an_unreadable_cache_is_recomputed(tmp_path):
    history = History([_round(1, None, **ADAM)])
    chain = _chain(tmp_path, "node", history)
    good = history.produced(chain, 1)
    cache_file(chain.state_dir, 1).write_bytes(b"not a cache")
    assert history.produced(chain, 1).digest == good.digest


@pytest.mark.parametrize("optimizer", ["fedavgm", "fedyogi"])
def test_every_optimiser_caches_what_it_needs_to_continue(tmp_path, optimizer):
    settings = {"server_optimizer": optimizer, "server_lr": 0.1}
    history = History([_round(n, n - 1 if n > 1 else None, **settings) for n in range(1, 4)])
    continuous = _chain(tmp_path, "node", history)
    for number in range(1, 4):
        last = history.produced(continuous, number)
    cold = history.produced(_chain(tmp_path, "cold", history), 3)
    assert cold.digest == last.digest

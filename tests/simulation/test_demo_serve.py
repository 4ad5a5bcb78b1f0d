"""The demo's serving ending, without processes: which transactions it sends, and in what shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bank_node.serve_input import parse_body
from simulation.demo_serve import _held_out, _request, _serve_config
from simulation.world import generate_world
from tests.bank_node.registry_world import node_toml


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """Stand in for the repo-wide autouse fixture of that name: no Django here."""


@pytest.fixture(scope="module")
def bank_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    world = tmp_path_factory.mktemp("world")
    generate_world(world, n_banks=3, preset="tiny", seed=5)
    return world / "bank_1.csv"


def test_it_sends_held_out_laundering_and_ordinary_rows_in_time_order(bank_file, tmp_path):
    config = node_toml(
        tmp_path,
        bank_file,
        '\n[evaluation]\ntrain_before = "2022-10-10"\nevaluate_from = "2022-10-10"\n',
    )
    frame = _held_out(config)
    assert list(frame["label"]).count(1) == 2 and list(frame["label"]).count(0) == 2
    assert frame["timestamp"].is_monotonic_increasing
    assert (frame["timestamp"] >= "2022-10-10").all()  # the test period only


def test_each_transaction_is_one_the_service_accepts_with_its_file_line_as_id(bank_file, tmp_path):
    frame = _held_out(node_toml(tmp_path, bank_file))
    sent = [_request(frame, i) for i in range(len(frame))]
    request = parse_body(json.dumps({"transactions": sent}).encode(), max_batch=10)
    assert len(request.transactions) == len(sent) == 4
    lines = bank_file.read_text().splitlines()
    first = int(sent[0]["id"].removeprefix("line-"))
    assert lines[first - 1].split(",")[2] == sent[0]["from_account"]


def test_the_serve_table_names_a_0600_token_file_and_is_added_once(bank_file, tmp_path):
    config = node_toml(tmp_path, bank_file)
    token = _serve_config(config)
    _serve_config(config)
    token_file = tmp_path / "serve.token"
    assert len(token) == 64 and token_file.stat().st_mode & 0o777 == 0o600
    assert config.read_text().count('[serve]\ntoken_file = "serve.token"') == 1

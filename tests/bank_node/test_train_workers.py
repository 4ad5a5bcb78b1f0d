"""A bank's training on several machines: the node (NODE_RANK 0) and `bank-node train-worker`.

Both machines are real processes on localhost talking gloo; the "shared volume" is a
temporary directory both see.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bank_node.baseline import default_policy
from bank_node.cli import main
from bank_node.config import ConfigError
from bank_node.config_training import TrainingConfig
from bank_node.stream_periods import PeriodEdges
from bank_node.train_session import SESSION_FILE, SessionError, TrainSession
from bank_node.train_worker import (
    Worker,
    check_session,
    read_session,
    serve_sessions,
    take_part,
    worker_from_env,
)
from bank_node.training import Normalizer
from bank_node.training_stream import StreamedData, train_round_stream
from models.features import FEATURE_NAMES
from models.nets import initial_vector
from models.stream_data import parquet_files

REPO = Path(__file__).resolve().parents[2]
DAY_NS = 86_400 * 10**9
SEED = 4
# One local epoch of 100-row steps over 600 rows: six gradient steps, enough to move the model.
POLICY = dataclasses.replace(default_policy(), local_epochs=1, batch_size=100, fedprox_mu=0.01)


def write_features(directory: Path, days: int = 4, rows_per_day: int = 200) -> tuple[Path, ...]:
    """Feature files as the node's engines write them: the node's feature columns by day."""
    rng = np.random.default_rng(0)
    for day in range(days):
        x = rng.normal(size=(rows_per_day, len(FEATURE_NAMES))) * 2 + 1
        signal = x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=rows_per_day)
        table = pa.table({
            **{name: x[:, i].astype(np.float32) for i, name in enumerate(FEATURE_NAMES)},
            "label": (signal > 4).astype(np.int8),
            "tick": (day * DAY_NS + rng.integers(0, DAY_NS, rows_per_day)).astype(np.int64),
        })  # fmt: skip
        folder = directory / f"day=2024-03-{day + 1:02d}"
        folder.mkdir(parents=True)
        pq.write_table(table, folder / "data_0.parquet", row_group_size=64)
    return parquet_files(directory)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> StreamedData:
    files = write_features(tmp_path_factory.mktemp("shared") / "features")
    return StreamedData(files, PeriodEdges(3 * DAY_NS, 4 * DAY_NS, 4 * DAY_NS))


@pytest.fixture
def norm() -> Normalizer:
    n = len(FEATURE_NAMES)
    return Normalizer(np.ones(n), np.full(n, 2.0), round_number=1)


@pytest.fixture
def base() -> np.ndarray:
    start = initial_vector(POLICY.model_spec, POLICY.n_features)
    return start + np.random.default_rng(1).normal(scale=0.01, size=start.size)


@pytest.fixture
def rendezvous(monkeypatch: pytest.MonkeyPatch) -> str:
    """A free MASTER_PORT on localhost, set for the node as for the worker."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", port)
    monkeypatch.delenv("NODE_RANK", raising=False)
    return port


def two_machines(session_dir: Path, timeout: float) -> TrainingConfig:
    return TrainingConfig(
        data="stream", accelerator="cpu", devices=1, num_nodes=2, strategy="ddp_spawn",
        session_dir=session_dir, join_timeout_seconds=timeout,
    )  # fmt: skip


@pytest.fixture
def start_worker(tmp_path: Path, rendezvous: str) -> Iterator[object]:
    """Start `bank-node train-worker` as NODE_RANK 1 in its own process; stopped at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(session_dir: Path, *arguments: str) -> subprocess.Popen[str]:
        # One torch thread: its processes share two cores with the node's and CI's.
        env = {**os.environ, "NODE_RANK": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "bank_node.cli", "train-worker", "--session-dir",
                   str(session_dir), "--max-sessions", "1", "--poll-seconds", "0.2", *arguments]  # fmt: skip
        process = subprocess.Popen(command, cwd=REPO, env=env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.mark.parametrize("feddyn", [False, True], ids=["fedprox", "feddyn-correction"])
def test_a_node_and_a_worker_machine_train_the_same_model_as_one_process(
    data: StreamedData,
    norm: Normalizer,
    base: np.ndarray,
    tmp_path: Path,
    start_worker,
    feddyn: bool,
) -> None:
    session_dir = tmp_path / "sessions"
    session_dir.mkdir()
    worker = start_worker(session_dir, "--num-nodes", "2")  # first: it takes a while to start
    alone = TrainingConfig(data="stream", accelerator="cpu")
    # FedDyn's -h_k reaches the worker machine with the starting weights.
    fix = np.random.default_rng(2).normal(scale=0.05, size=base.size) if feddyn else None
    one, rows_one = train_round_stream(data, alone, POLICY, base, SEED, norm, fix)
    two, rows_two = train_round_stream(data, two_machines(session_dir, 120), POLICY, base, SEED,
                                       norm, fix)  # fmt: skip
    if fix is not None:  # and it does change what the round trains
        plain, _ = train_round_stream(data, alone, POLICY, base, SEED, norm)
        assert np.abs(plain - one).max() > 1e-3
    _, stderr = worker.communicate(timeout=120)
    assert worker.returncode == 0, stderr
    assert "joined training session" in stderr and "done" in stderr
    assert rows_one == rows_two == 600
    assert np.abs(one - two).max() < 1e-5  # the devices=2 test's tolerance
    assert np.abs(two - base).max() > 1e-3  # it trained
    assert list(session_dir.iterdir()) == []  # the session and its answers are gone


def test_without_its_worker_the_node_fails_the_training_at_the_join_deadline(
    data: StreamedData, norm: Normalizer, base: np.ndarray, tmp_path: Path, rendezvous: str
) -> None:
    session_dir = tmp_path / "sessions"
    with pytest.raises(
        SessionError, match=r"no training worker with NODE_RANK 1 joined within 2 s"
    ):
        train_round_stream(data, two_machines(session_dir, 2), POLICY, base, SEED, norm)
    assert list(session_dir.iterdir()) == []


def test_a_worker_refuses_a_session_with_another_num_nodes_and_the_node_fails_with_its_reason(
    data: StreamedData, norm: Normalizer, base: np.ndarray, tmp_path: Path, start_worker
) -> None:
    session_dir = tmp_path / "sessions"
    session_dir.mkdir()
    worker = start_worker(session_dir, "--num-nodes", "3")
    # The deadline is far: the node must stop on the refusal, not wait it out.
    with pytest.raises(SessionError, match=r"NODE_RANK 1 refused the session: the node trains "
                       r"with num_nodes = 2, devices = 1.*--num-nodes 3"):  # fmt: skip
        train_round_stream(data, two_machines(session_dir, 300), POLICY, base, SEED, norm)
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0
    assert "refusing training session" in stderr and "--num-nodes 3" in stderr


def _session_dict(files: tuple[Path, ...]) -> dict[str, object]:
    return {
        "format": "consortium-train-session-1", "session_id": "5e" * 16, "announced_at": 0.0,
        "join_timeout_seconds": 60.0, "master_addr": "127.0.0.1", "master_port": 29500,
        "accelerator": "cpu", "devices": 1, "num_nodes": 2, "strategy": "ddp_spawn",
        "model": {"spec": POLICY.model_spec, "n_features": 44, "lr": 1e-3, "fedprox_mu": 0.0},
        "stream": {"files": [str(f) for f in files], "columns": list(FEATURE_NAMES),
                   "batch_size": 100, "buffer_rows": 1000, "shuffle": True, "seed": 1,
                   "before_tick": None, "read_rows": 1000},
        "file_rows": [200] * len(files), "arrays_sha256": "0" * 64, "epochs": 1,
        "lr": 1e-3, "seed": 1,
    }  # fmt: skip


def _session(data: StreamedData, **changes: object) -> TrainSession:
    return TrainSession.from_dict(_session_dict(data.files) | changes)


@pytest.mark.parametrize(
    ("changes", "port", "words"),
    [({"file_rows": [200, 200, 199, 200]}, None, r"day=2024-03-03/data_0.parquet holds 200 "
      r"rows here, 199 at the node"),
     ({"master_port": 29501}, 29500, "MASTER_PORT here is 29500, the node's is 29501"),
     ({"devices": 2}, None, "devices = 2.*--devices 1")],
)  # fmt: skip
def test_a_worker_refuses_a_session_it_cannot_match_naming_what_differs(
    data: StreamedData, tmp_path: Path, changes: dict[str, object], port: int | None, words: str
) -> None:
    check_session(_session(data), Worker(tmp_path, 1, 2, 1, port))  # the same: fine
    with pytest.raises(SessionError, match=words):
        check_session(_session(data, **changes), Worker(tmp_path, 1, 2, 1, port))


def test_a_worker_refuses_a_feature_file_it_cannot_read(data: StreamedData, tmp_path: Path):
    files = [str(f) for f in data.files[:-1]] + [str(tmp_path / "elsewhere.parquet")]
    session = _session(data, stream=_session(data).stream | {"files": files})
    with pytest.raises(SessionError, match=r"cannot read the feature file .*elsewhere\.parquet"):
        check_session(session, Worker(tmp_path, 1, 2, 1, None))


def test_a_malformed_session_file_is_an_error_naming_it_not_a_traceback(tmp_path: Path):
    (tmp_path / SESSION_FILE).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(SessionError, match="not a training session"):
        read_session(tmp_path)
    wrong = _session_dict(()) | {"num_nodes": "2"}
    (tmp_path / SESSION_FILE).write_text(json.dumps(wrong))
    with pytest.raises(SessionError, match="a training session whose num_nodes is '2'"):
        read_session(tmp_path)
    (tmp_path / SESSION_FILE).write_text(json.dumps(_session_dict(()) | {"session_id": "../x"}))
    with pytest.raises(SessionError, match="is not 32 hex"):
        read_session(tmp_path)
    (tmp_path / SESSION_FILE).write_text("{not json")
    with pytest.raises(SessionError, match=r"cannot read .*session\.json"):
        read_session(tmp_path)


@pytest.mark.parametrize(
    ("env", "words"),
    [({}, "NODE_RANK must be set to this machine's rank, 1 to 1 for --num-nodes 2"),
     ({"NODE_RANK": "2"}, "NODE_RANK must be set"),
     ({"NODE_RANK": "1", "MASTER_PORT": "http"}, "MASTER_PORT must be a port number")],
)  # fmt: skip
def test_train_worker_names_a_bad_environment(
    env: dict[str, str], words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    for name in ("NODE_RANK", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    argv = ["train-worker", "--session-dir", str(tmp_path), "--num-nodes", "2"]
    assert main(argv) == 2
    assert words in capsys.readouterr().err


def test_the_node_needs_the_rendezvous_address_in_its_environment(
    data: StreamedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(SessionError, match=r"set MASTER_ADDR .* MASTER_PORT"):
        train_round_stream(data, two_machines(tmp_path, 5), POLICY, None, SEED, None)


def test_a_worker_refuses_starting_weights_that_do_not_match_their_digest(
    data: StreamedData, tmp_path: Path
) -> None:
    session = _session(data)
    session.arrays_path(tmp_path).write_bytes(b"a partial copy")
    worker = Worker(tmp_path, 1, 2, 1, None)
    assert not take_part(session, worker)
    answer = json.loads(session.answer_path(tmp_path, 1).read_text())
    assert answer["joined"] is False
    assert "does not match the session's SHA-256" in answer["message"]


def test_a_worker_ignores_a_session_past_its_join_deadline(data: StreamedData, tmp_path: Path):
    stale = _session_dict(data.files) | {"announced_at": time.time() - 61}  # 60 s to join
    (tmp_path / SESSION_FILE).write_text(json.dumps(stale))
    worker = Worker(tmp_path, 1, 2, 1, None)
    assert serve_sessions(worker, idle_exit_seconds=0.3, poll=0.05) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [SESSION_FILE]  # no answer


def test_a_statefulset_worker_takes_node_rank_one_more_than_its_pod_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NODE_RANK", raising=False)
    monkeypatch.setenv("POD_INDEX", "1")
    worker = worker_from_env(tmp_path / "sessions", 3, 1, "POD_INDEX")
    assert worker.node_rank == 2 and (tmp_path / "sessions").is_dir()
    with pytest.raises(ConfigError, match="1 to 1 for --num-nodes 2"):
        worker_from_env(tmp_path / "sessions", 2, 1, "POD_INDEX")
    with pytest.raises(ConfigError, match=r"--session-dir .*missing/sessions"):
        worker_from_env(tmp_path / "missing" / "sessions", 3, 1, "POD_INDEX")

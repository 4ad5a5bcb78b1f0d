"""`bank-node train-worker`: one more machine of a bank's training (NODE_RANK >= 1).

It holds no keys and never talks to the portal: it waits for the node (NODE_RANK 0) to
announce a training session in the shared ``session_dir`` (`bank_node.train_session`),
checks that it can match it exactly, answers (joined, or refused with the reason), trains
its shard in the same `models.training.train_stream` call, and waits for the next one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

from bank_node.config import ConfigError
from bank_node.train_session import (
    SESSION_FILE,
    SessionError,
    TrainSession,
    file_rows,
    last_line,
    load_arrays,
    write_atomically,
)
from bank_node.training import model_from_vector
from models.stream_data import StreamSpec
from models.training import train_stream

log = logging.getLogger("bank_node.train_worker")


@dataclass(frozen=True)
class Worker:
    """This machine: its place among the bank's machines, as its command line and env say."""

    session_dir: Path
    node_rank: int
    num_nodes: int
    devices: int | str
    master_port: int | None  # MASTER_PORT, if set here; unset: the session's
    master_addr: str | None = None  # MASTER_ADDR, if set here; unset: the session's


def worker_from_env(
    session_dir: Path, num_nodes: int, devices: int | str, pod_index_env: str | None = None
) -> Worker:
    """This machine's worker, NODE_RANK and MASTER_PORT read from the environment.

    ``pod_index_env``: NODE_RANK is one more than the number in that variable (a
    StatefulSet's pod index). Creates ``session_dir`` in its parent if it is missing.
    Raises ConfigError naming what is wrong.
    """
    rank = os.environ.get("NODE_RANK", "")
    if pod_index_env is not None:
        index = os.environ.get(pod_index_env, "")
        rank = str(int(index) + 1) if index.isdigit() else f"{pod_index_env}={index!r} + 1"
    port = os.environ.get("MASTER_PORT", "")
    if num_nodes < 2 or not rank.isdigit() or not 1 <= int(rank) < num_nodes:
        raise ConfigError(
            f"NODE_RANK must be set to this machine's rank, 1 to {num_nodes - 1} for "
            f"--num-nodes {num_nodes} (>= 2; the node itself is 0), not {rank!r}"
        )
    if port and not port.isdigit():
        raise ConfigError(f"MASTER_PORT must be a port number, not {port!r}")
    try:
        session_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--session-dir {session_dir}: {exc.strerror}") from exc
    address = os.environ.get("MASTER_ADDR") or None
    return Worker(session_dir, int(rank), num_nodes, devices, int(port) if port else None, address)


def read_session(directory: Path) -> TrainSession | None:
    """The announced session, or None; SessionError when the file is not one."""
    path = directory / SESSION_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise SessionError(f"cannot read {path}: {exc}") from exc
    return TrainSession.from_dict(raw)


def check_session(session: TrainSession, worker: Worker) -> None:
    """Refuse (SessionError) a session this machine cannot match exactly: DDP would hang."""
    mine = (worker.num_nodes, worker.devices)
    if (session.num_nodes, session.devices) != mine or session.strategy != "ddp_spawn":
        raise SessionError(
            f"the node trains with num_nodes = {session.num_nodes}, devices = "
            f"{session.devices!r}, strategy = {session.strategy!r}; this worker runs with "
            f"--num-nodes {worker.num_nodes} --devices {worker.devices} under ddp_spawn: "
            "make them the same on every machine"
        )
    if worker.master_port is not None and worker.master_port != session.master_port:
        raise SessionError(
            f"MASTER_PORT here is {worker.master_port}, the node's is {session.master_port}"
        )
    files = tuple(Path(f) for f in session.stream["files"])
    try:
        rows = file_rows(files)
    except OSError as exc:
        raise SessionError(
            f"cannot read the feature file {getattr(exc, 'filename', None) or exc}: "
            f"{exc.strerror or exc}; mount the node's work_dir at the same path here"
        ) from exc
    for path, theirs, ours in zip(files, session.file_rows, rows, strict=True):
        if theirs != ours:
            raise SessionError(f"{path} holds {ours} rows here, {theirs} at the node")


def prepare(session: TrainSession, worker: Worker) -> tuple[pl.LightningModule, StreamSpec]:
    """The session's model at its starting weights, and its stream; SessionError to refuse."""
    check_session(session, worker)
    arrays = load_arrays(session, worker.session_dir)
    recipe = session.model
    weights = arrays["weights"]
    model = model_from_vector(recipe.spec, recipe.n_features, weights, recipe.lr, recipe.fedprox_mu)
    if recipe.fedprox_mu > 0:  # as bank_node.training.round_start anchors it
        model.set_fedprox_reference(weights)
    if "correction" in arrays:  # FedDyn's -h_k, as round_start adds it at rank 0
        model.set_control_correction(arrays["correction"])
    return model, session.spec(arrays)


def answer(session: TrainSession, worker: Worker, joined: bool, message: str = "") -> None:
    body = {"node_rank": worker.node_rank, "joined": joined, "message": message}
    path = session.answer_path(worker.session_dir, worker.node_rank)
    write_atomically(path, json.dumps(body).encode())


def refuse(session: TrainSession, worker: Worker, reason: str) -> bool:
    log.error("refusing training session %s: %s", session.session_id, reason)
    answer(session, worker, False, reason)
    return False


def take_part(session: TrainSession, worker: Worker) -> bool:
    """Join ``session`` and train, or refuse it; True when its training completed."""
    try:
        model, spec = prepare(session, worker)
    except (SessionError, ValueError) as exc:
        return refuse(session, worker, str(exc))
    except (KeyError, TypeError) as exc:  # a stream or model the session's writer garbled
        return refuse(session, worker, f"a malformed session: {type(exc).__name__}: {exc}")
    # Lightning reads the rendezvous address from the environment; this session's, not the
    # last one's, where the worker's own environment left them unset.
    os.environ["MASTER_ADDR"] = worker.master_addr or session.master_addr
    os.environ["MASTER_PORT"] = str(session.master_port)  # checked equal to ours, if set
    os.environ["NODE_RANK"] = str(worker.node_rank)  # also when it came from a pod index
    answer(session, worker, True)
    log.info("joined training session %s as NODE_RANK %d", session.session_id, worker.node_rank)
    try:
        train_stream(model, spec, epochs=session.epochs, lr=session.lr, seed=session.seed,
                     settings=session.settings())  # fmt: skip
    except (ProcessRaisedException, ProcessExitedException) as exc:
        log.error("training session %s failed: %s", session.session_id, last_line(exc))
        return False
    log.info("training session %s done", session.session_id)
    return True


def serve_sessions(
    worker: Worker, *, max_sessions: int = 0, idle_exit_seconds: float = 0, poll: float = 1.0
) -> int:
    """Take part in every session announced from now on; the number taken part in.

    ``max_sessions``: return after that many (0: never); ``idle_exit_seconds``: return after
    that long without a new session (0: never).
    """
    seen: set[str] = set()
    taken, idle_since = 0, time.monotonic()
    while not max_sessions or taken < max_sessions:
        session = _next_session(worker, seen)
        if session is not None:
            take_part(session, worker)
            taken, idle_since = taken + 1, time.monotonic()
        elif idle_exit_seconds and time.monotonic() - idle_since > idle_exit_seconds:
            break
        else:
            time.sleep(poll)
    return taken


def _next_session(worker: Worker, seen: set[str]) -> TrainSession | None:
    """A session not seen yet and still open to joiners (a crashed node's is not)."""
    try:
        session = read_session(worker.session_dir)
    except SessionError as exc:
        log.error("%s", exc)
        return None
    if session is None or session.session_id in seen:
        return None
    seen.add(session.session_id)
    if session.expired(time.time()):
        log.warning("ignoring training session %s: its join deadline has passed",
                    session.session_id)  # fmt: skip
        return None
    return session

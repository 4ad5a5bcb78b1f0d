"""Training on several machines (``num_nodes > 1``): the session rank 0 announces to its workers.

The node (NODE_RANK 0) is the only process that knows a round has started. Before it trains
it writes a **session** into ``[training] session_dir``, a directory every machine mounts
(the volume that already holds the Parquet features every rank reads): ``session.json``,
what the other machines must match exactly for DDP not to hang (the model recipe, the
`StreamSpec`, epochs, learning rate, seed, the trainer settings and the rendezvous port),
and ``session-<id>.npz``, the starting weights and the normalisation, whose SHA-256 the JSON
carries. Each file is written to a temporary name and renamed, so a reader sees all or
nothing. Every `bank-node train-worker` (`bank_node.train_worker`) polls for it, checks it,
and answers in ``session-<id>.node-<rank>.json``: joined, or refused with its reason. The
node waits for every answer (at most ``join_timeout_seconds``), fails the round's training
with a `SessionError` naming the machines that refused or never answered, and otherwise
trains; the same timeout bounds the rendezvous and each collective, so a worker dying
mid-session fails the round too, and never hangs it. The files go when the session ends.

A file rather than torch's TCPStore: the workers hold no keys and the volume is shared
already, so nothing new listens on the network before the rendezvous; a session can be read
(and a refusal diagnosed) with ``cat``; and a worker can check the feature files it will
read before it commits to the rendezvous.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytorch_lightning as pl
from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

from models.stream_data import StreamSpec
from models.training import TrainerSettings, train_stream
from models.vector import model_to_vector

SESSION_FILE = "session.json"
FORMAT = "consortium-train-session-1"
POLL_SECONDS = 0.2


class SessionError(Exception):
    """A training session that cannot run, or did not; the message says what and where."""


@dataclass(frozen=True)
class ModelRecipe:
    """How every machine builds the same model: `bank_node.training.model_from_vector`'s."""

    spec: dict[str, Any]
    n_features: int
    lr: float
    fedprox_mu: float


@dataclass(frozen=True)
class TrainSession:
    """Everything the machines of one training session must agree on (``session.json``)."""

    session_id: str
    announced_at: float  # rank 0's clock, seconds since the epoch
    join_timeout_seconds: float
    master_addr: str
    master_port: int
    accelerator: str
    devices: int | str
    num_nodes: int
    strategy: str
    model: ModelRecipe
    stream: dict[str, Any]  # the StreamSpec's fields but mean/std (in the .npz), files as str
    file_rows: list[int]  # each feature file's rows, from its metadata: the same files?
    arrays_sha256: str
    epochs: int
    lr: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, raw: Any) -> TrainSession:
        """The session read strictly; `SessionError` naming the field otherwise."""
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise SessionError(f"not a training session of format {FORMAT!r}")
        fields = {k: v for k, v in raw.items() if k != "format"}
        if set(fields) != set(_FIELD_TYPES):
            odd = sorted(set(fields) ^ set(_FIELD_TYPES))
            raise SessionError(f"a training session with missing or unknown fields: {odd}")
        for name, kind in _FIELD_TYPES.items():
            if not isinstance(fields[name], kind) or isinstance(fields[name], bool):
                raise SessionError(f"a training session whose {name} is {fields[name]!r}")
        if not re.fullmatch(r"[0-9a-f]{32}", fields["session_id"]):  # it names files
            raise SessionError(f"a training session id {fields['session_id']!r} is not 32 hex")
        if len(fields["file_rows"]) != len(fields["stream"].get("files", ())):
            raise SessionError("a training session whose file_rows do not match its files")
        try:
            return cls(**{**fields, "model": ModelRecipe(**fields["model"])})
        except TypeError as exc:
            raise SessionError(f"a training session with a malformed model: {exc}") from exc

    def settings(self) -> TrainerSettings:
        return TrainerSettings(
            accelerator=self.accelerator, devices=self.devices, num_nodes=self.num_nodes,
            strategy=self.strategy, timeout_seconds=self.join_timeout_seconds,
        )  # fmt: skip

    def spec(self, arrays: dict[str, np.ndarray]) -> StreamSpec:
        stream = dict(self.stream)
        files = tuple(Path(f) for f in stream.pop("files"))
        return StreamSpec(
            files, tuple(stream.pop("columns")), mean=arrays.get("mean"), std=arrays.get("std"),
            **stream,
        )  # fmt: skip

    def expired(self, now: float) -> bool:
        return now > self.announced_at + self.join_timeout_seconds

    def arrays_path(self, directory: Path) -> Path:
        return directory / f"session-{self.session_id}.npz"

    def answer_path(self, directory: Path, node_rank: int) -> Path:
        return directory / f"session-{self.session_id}.node-{node_rank}.json"


_NUMBER = (int, float)
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "session_id": str, "announced_at": _NUMBER, "join_timeout_seconds": _NUMBER,
    "master_addr": str, "master_port": int, "accelerator": str, "devices": (int, str),
    "num_nodes": int, "strategy": str, "model": dict, "stream": dict, "file_rows": list,
    "arrays_sha256": str, "epochs": int, "lr": _NUMBER, "seed": int,
}  # fmt: skip


def file_rows(files: tuple[Path, ...]) -> list[int]:
    return [pq.ParquetFile(path).metadata.num_rows for path in files]


def write_atomically(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` entirely or not at all, for a reader on another machine."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def pack_arrays(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def load_arrays(session: TrainSession, directory: Path) -> dict[str, np.ndarray]:
    """The session's starting weights (and normalisation), checked against its digest."""
    path = session.arrays_path(directory)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SessionError(f"cannot read {path}: {exc.strerror}") from exc
    if hashlib.sha256(data).hexdigest() != session.arrays_sha256:
        raise SessionError(f"{path} does not match the session's SHA-256 (a partial copy?)")
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def rendezvous_address() -> tuple[str, int]:
    """MASTER_ADDR and MASTER_PORT, as Lightning reads them on every machine; or SessionError."""
    address, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    if not address or not port.isdigit() or os.environ.get("NODE_RANK", "0") != "0":
        raise SessionError(
            "num_nodes > 1: set MASTER_ADDR (this machine's address as the workers reach it), "
            "MASTER_PORT (a free port they can reach) and NODE_RANK=0 (or leave it unset) in "
            f"the node's environment; found MASTER_ADDR={address!r}, MASTER_PORT={port!r}, "
            f"NODE_RANK={os.environ.get('NODE_RANK')!r}"
        )
    return address, int(port)


@contextmanager
def announced(
    directory: Path, session: TrainSession, arrays: dict[str, np.ndarray]
) -> Iterator[TrainSession]:
    """Write the session for the workers; remove it, and their answers, when the block ends."""
    directory.mkdir(parents=True, exist_ok=True)
    data = pack_arrays(arrays)
    session = replace(session, arrays_sha256=hashlib.sha256(data).hexdigest())
    write_atomically(session.arrays_path(directory), data)
    write_atomically(directory / SESSION_FILE, json.dumps(session.to_dict()).encode())
    try:
        yield session
    finally:
        (directory / SESSION_FILE).unlink(missing_ok=True)
        for path in directory.glob(f"session-{session.session_id}.*"):
            path.unlink(missing_ok=True)


def await_workers(directory: Path, session: TrainSession) -> None:
    """Return once every worker joined; SessionError on a refusal or at the deadline."""
    waiting = set(range(1, session.num_nodes))
    deadline = time.monotonic() + session.join_timeout_seconds
    while waiting:
        for rank in sorted(waiting):
            answer = read_answer(session.answer_path(directory, rank))
            if answer is None:
                continue
            if not answer.get("joined"):
                raise SessionError(
                    f"the training worker with NODE_RANK {rank} refused the session: "
                    f"{answer.get('message', 'no reason given')}"
                )
            waiting.discard(rank)
        if waiting and time.monotonic() > deadline:
            missing = ", ".join(str(r) for r in sorted(waiting))
            raise SessionError(
                f"no training worker with NODE_RANK {missing} joined within "
                f"{session.join_timeout_seconds:g} s ([training] join_timeout_seconds): is "
                f"`bank-node train-worker` running on that machine, watching {directory}?"
            )
        if waiting:
            time.sleep(POLL_SECONDS)


def read_answer(path: Path) -> dict[str, Any] | None:
    try:
        answer = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"joined": False, "message": f"an unreadable answer in {path}: {exc}"}
    return answer if isinstance(answer, dict) else {"joined": False, "message": f"{path}"}


def train_on_nodes(
    model: pl.LightningModule,
    spec: StreamSpec,
    recipe: ModelRecipe,
    *,
    epochs: int,
    lr: float,
    seed: int,
    settings: TrainerSettings,
    directory: Path,
    join_timeout_seconds: float,
    correction: np.ndarray | None = None,
) -> int:
    """`models.training.train_stream` as NODE_RANK 0 of ``settings.num_nodes`` machines.

    ``model`` is at the session's starting weights (and FedProx anchor, and FedDyn's
    ``correction``, which every worker gets too); it ends with the weights the machines
    agreed on. Raises `SessionError` when a worker refuses, does not
    join in time, or the distributed training fails.
    """
    address, port = rendezvous_address()
    arrays = {"weights": model_to_vector(model)}
    if correction is not None:
        arrays["correction"] = np.asarray(correction, dtype=np.float64)
    if spec.mean is not None and spec.std is not None:
        arrays |= {"mean": spec.mean, "std": spec.std}
    stream = {k: getattr(spec, k) for k in ("batch_size", "buffer_rows", "shuffle", "read_rows")}
    stream |= {"seed": int(spec.seed), "files": [str(f) for f in spec.files]}
    stream |= {"columns": list(spec.columns), "before_tick": _optional_int(spec.before_tick)}
    session = TrainSession(
        session_id=uuid.uuid4().hex, announced_at=time.time(),
        join_timeout_seconds=join_timeout_seconds, master_addr=address, master_port=port,
        accelerator=settings.accelerator, devices=settings.devices,
        num_nodes=settings.num_nodes, strategy=settings.strategy, model=recipe,
        stream=stream,
        file_rows=file_rows(spec.files), arrays_sha256="", epochs=epochs, lr=lr, seed=seed,
    )  # fmt: skip
    with announced(directory, session, arrays) as session:
        await_workers(directory, session)
        try:
            return train_stream(
                model, spec, epochs=epochs, lr=lr, seed=seed, settings=session.settings()
            )
        except (ProcessRaisedException, ProcessExitedException) as exc:
            raise SessionError(
                f"training across {session.num_nodes} machines failed: {last_line(exc)}"
            ) from exc


def _optional_int(value: int | None) -> int | None:
    return None if value is None else int(value)


def last_line(exc: BaseException) -> str:
    """The last line of a spawned process's traceback: its exception, e.g. a store timeout."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__

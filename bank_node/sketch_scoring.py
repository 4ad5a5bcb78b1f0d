"""The cross-bank columns a model of a ``counterparty_sketch`` policy reads, for scoring.

Training appends them from the newest sketch round of the policy's spec the node keeps
(`bank_node.sketch_round.sketched_local_data`). Scoring reads the same kept files in
``state_dir`` (never the portal): the others' summed sketch of that round, keyed with the
sketch key of the model's key epoch, and gives each row the features of the latest sketch
dated on or before its own time (`models.counterparty_sketch.features_as_of`), so a row
reads no label of its own period and a row before the first as-of date reads zeros.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from bank_node.config import KEY_FIELDS, ConfigError, NodeConfig, files_check
from bank_node.keys import Keyring, keyring_load
from bank_node.online_features import Transaction
from bank_node.passport import PASSPORT_FILE
from bank_node.sketch_round import CrossBankSketch, kept_round, others_sketch_file, spec_shape
from bank_node.staging import SCHEMA, staged_tables
from bank_node.state import NodeState, state_file
from he.errors import HEError
from models.counterparty_sketch import SKETCH_FEATURE_NAMES, sketch_key
from protocol import SketchSpec

if TYPE_CHECKING:  # scoring_model imports this module
    from bank_node.scoring_model import ScoringModel

KEY_EPOCH = "key_epoch"  # in a model's global_model.json: the epoch its round ran under


@dataclass(frozen=True)
class SketchSource:
    """Where a node keeps its sketch rounds, and its keys (loaded only for a sketch model)."""

    state_dir: Path
    keyring: Callable[[], Keyring]


def node_sketch_source(config: NodeConfig) -> SketchSource:
    """The node's kept sketch rounds and its keys, as `bank-node score` and `serve` read them."""

    def keyring() -> Keyring:
        files_check(config, *KEY_FIELDS)
        return keyring_load(
            config.secret_context_file,
            config.ckks_params_file,
            config.signing_key_file,
            config.previous_key_dirs,
        )

    return SketchSource(config.state_dir, keyring)


@dataclass(frozen=True)
class CrossBankColumns:
    """A kept sketch round and the key its cells were hashed with: the columns of any rows."""

    sketch: CrossBankSketch
    key: bytes

    @property
    def round_number(self) -> int:
        return self.sketch.round_number

    def features(self, frame: pd.DataFrame) -> np.ndarray:
        """``SKETCH_FEATURE_NAMES`` of every row of ``frame`` (its timestamp and accounts)."""
        return self.sketch.features(self.key, frame)


def cross_bank_columns(
    source: SketchSource, spec: SketchSpec, key_epoch: str | None, meta_path: Path
) -> CrossBankColumns:
    """The columns of the newest kept sketch round of ``spec``, keyed for ``key_epoch``.

    ``meta_path`` is the model's description, named in every ConfigError.
    """
    number = _kept_number(source.state_dir, spec, meta_path)
    others = _kept_sketch(others_sketch_file(source.state_dir, number), spec, number)
    key = _sketch_key(source, key_epoch, meta_path)
    return CrossBankColumns(CrossBankSketch(number, spec, others), key)


def cross_bank_file(columns: CrossBankColumns, files: Sequence[Path], work: Path) -> np.ndarray:
    """Every input row's cross-bank columns by ``rid``: a read-only map of a file in ``work``.

    ``files`` are the inputs in `bank_node.staging.input_files`' order (the rows' ``rid``
    order); they are read again a chunk at a time, as the feature engines read them.
    """
    path = work / "cross-bank.f32"
    rows = 0
    with path.open("wb") as out:
        for table in staged_tables(list(files)):
            if len(table) and table.column("rid")[0].as_py() != rows:
                raise RuntimeError(f"staged rows of {files} are not in input order")  # a bug
            extra = columns.features(_staged_frame(table))
            out.write(np.ascontiguousarray(extra, dtype=np.float32).tobytes())
            rows += len(table)
    width = len(SKETCH_FEATURE_NAMES)
    if rows == 0:
        return np.zeros((0, width), dtype=np.float32)
    return np.memmap(path, dtype=np.float32, mode="r", shape=(rows, width))


def _staged_frame(table: pa.Table) -> pd.DataFrame:
    """The columns a sketch reads, as `bank_node.data.load_transactions` gives them."""
    plain = table.cast(SCHEMA)
    frame = pd.DataFrame(
        {
            n: plain.column(n).to_pylist()
            for n in ("from_bank", "from_account", "to_bank", "to_account")
        }
    )
    frame["timestamp"] = plain.column("tick").to_numpy().astype("datetime64[ns]")
    return frame


def served_cross_bank(columns: CrossBankColumns, transactions: Sequence[Transaction]) -> np.ndarray:
    """The cross-bank columns of transactions `bank-node serve` was asked to score."""
    frame = pd.DataFrame(
        {
            "timestamp": np.array([t.timestamp for t in transactions], "datetime64[s]"),
            "from_bank": [t.from_bank for t in transactions],
            "from_account": [t.from_account for t in transactions],
            "to_bank": [t.to_bank for t in transactions],
            "to_account": [t.to_account for t in transactions],
        }
    )
    return columns.features(frame)


def check_sketch_served(model: ScoringModel, history: bool) -> None:
    """A sketch model is served only for a feature set whose requests name both accounts."""
    if model.cross_bank is not None and not history:
        raise ConfigError(
            f"{model.source}: the model reads cross-bank sketch features, and requests for "
            f"feature set {model.policy.feature_set!r} carry no accounts to look up; score "
            "it in batches: bank-node score"
        )


def model_key_epoch(meta: dict[str, Any], directory: Path) -> str | None:
    """The key epoch a model's round ran under: its description's, else its passport's
    (a registry version stored before descriptions recorded it)."""
    epoch = meta.get(KEY_EPOCH)
    if isinstance(epoch, str) and epoch:
        return epoch
    passport = directory / PASSPORT_FILE
    try:
        epoch = json.loads(passport.read_text()).get(KEY_EPOCH)
    except (OSError, ValueError, AttributeError):
        return None
    return epoch if isinstance(epoch, str) and epoch else None


def _kept_number(state_dir: Path, spec: SketchSpec, meta_path: Path) -> int:
    path = state_file(state_dir)
    try:
        kept = NodeState.load(path).sketches
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a node state file: {exc}") from exc
    number = kept_round(kept, spec) if isinstance(kept, dict) else None
    if number is None:
        raise ConfigError(
            f"{meta_path}: the model reads cross-bank sketch features (counterparty_sketch "
            f"as of {', '.join(spec.as_of)}), and {state_dir} keeps no published sketch round "
            "of that spec; let `bank-node run` conclude the policy's published sketch round "
            "(it keeps the others' sum in state_dir), or set state_dir to the node's that did"
        )
    return number


def _kept_sketch(path: Path, spec: SketchSpec, number: int) -> np.ndarray:
    """The others' sum kept for round ``number``; ConfigError naming the file otherwise."""
    again = (
        f'restore state_dir from a backup, or remove round {number} from "sketches" in '
        f"{state_file(path.parent)} so that `bank-node run` concludes it again"
    )
    try:
        others = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path} does not exist, but the node state lists sketch round {number}; {again}"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a kept sketch ({exc}); {again}") from exc
    expected = (len(spec.as_of), *spec_shape(spec).cells)
    if others.shape != expected or not np.issubdtype(others.dtype, np.floating):
        raise ConfigError(
            f"{path}: holds {others.dtype} values of shape {others.shape}, not the {expected} "
            "(dates x channels x depth x width) the model's counterparty_sketch asks for; " + again
        )
    if not np.isfinite(others).all():
        raise ConfigError(f"{path}: holds values that are not finite; {again}")
    return others


def _sketch_key(source: SketchSource, key_epoch: str | None, meta_path: Path) -> bytes:
    if key_epoch is None:
        raise ConfigError(
            f"{meta_path}: records no key_epoch, and the model's cross-bank features are keyed "
            "by the key epoch its round ran under; score with a model the node saved since "
            '(the next evaluated round), or add "key_epoch": "<fingerprint>" to the file'
        )
    try:
        integrity = source.keyring().integrity_for(key_epoch)
    except HEError as exc:
        raise ConfigError(
            f"{meta_path}: the model's cross-bank features are keyed by the integrity.key of "
            f"key epoch {key_epoch[:16]}...: {exc}"
        ) from exc
    return sketch_key(integrity, key_epoch)

"""The ``[serve]`` table of the node config: how `bank-node serve` listens, authenticates, loads.

Kept apart from ``bank_node.config`` (which only registers the table): its reader raises
``ValueError`` and ``config`` turns that into a ``ConfigError`` naming the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8780
DEFAULT_MAX_BATCH = 1000


@dataclass(frozen=True)
class ServeConfig:
    """How the real-time scoring service runs (``[serve]``); every key optional."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # The bearer token callers present; the service refuses to start without it.
    token_file: Path | None = None
    max_batch: int = DEFAULT_MAX_BATCH
    # The model directory to serve; unset: the node's state_dir (its promoted model).
    model_dir: Path | None = None


SERVE_REFERENCE: dict[str, tuple[str | None, str]] = {
    "serve": (
        None,
        "The real-time scoring service (bank-node serve): bank-internal, never exposed to "
        "the internet (docs/serving.md).",
    ),
    "serve.host": (
        None,
        "Address it listens on; 0.0.0.0 in a container, 127.0.0.1 (default) on a host.",
    ),
    "serve.port": (None, "Port of POST /score, /healthz, /readyz and /metrics."),
    "serve.token_file": (
        '"serve.token"',
        "File holding the bearer token callers of POST /score present (keep it 0600); "
        "required to serve.",
    ),
    "serve.max_batch": (None, "Most transactions one POST /score may carry (413 above)."),
    "serve.model_dir": (
        '"state/models/round-7"',
        "Model directory to serve; unset: state_dir (the promoted model). Reloaded on SIGHUP "
        "or when its files change.",
    ),
}


def _text(name: str, value: Any, base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'{name} must be a non-empty string in quotes, e.g. {name} = "..."')
    return value.strip()


def _path(name: str, value: Any, base: Path) -> Path:
    path = Path(_text(name, value, base))
    return path if path.is_absolute() else (base / path).resolve()


def _port(name: str, value: Any, base: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65_535:
        raise ValueError(f"{name} must be a port number from 1 to 65535, not {value!r}")
    return value


def _count(name: str, value: Any, base: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
    return value


SERVE_READERS: dict[str, Callable[[str, Any, Path], Any]] = {
    "host": _text,
    "port": _port,
    "token_file": _path,
    "max_batch": _count,
    "model_dir": _path,
}


def read_serve(name: str, table: dict[str, Any], base: Path) -> ServeConfig:
    """The ``[serve]`` table read and checked; relative paths are relative to ``base``."""
    return ServeConfig(**{k: SERVE_READERS[k](f"{name}.{k}", v, base) for k, v in table.items()})

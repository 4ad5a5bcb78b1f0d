"""The node's typed configuration, read from a TOML file and checked at start-up.

The value readers are in ``config_readers.py``; the ``[guardrails]``, ``[evaluation]``,
``[training]`` and ``[serve]`` tables each in their own module. Their public names
(``ConfigError``, ``Guardrails``, ``Evaluation``...) are importable from here as well.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bank_node.config_evaluation import (
    EVALUATION_REFERENCE,
    Evaluation,
    read_evaluation,
)
from bank_node.config_guardrails import GUARDRAILS_REFERENCE, Guardrails, read_guardrails
from bank_node.config_readers import (
    REFERENCE_DOC,
    ConfigError,
    as_flag,
    as_integer,
    as_number,
    as_path,
    as_paths,
    as_text,
    refuse_unknown,
)
from bank_node.config_training import (
    TRAINING_READERS,
    TRAINING_REFERENCE,
    TrainingConfig,
    read_training,
)
from bank_node.schemas import DATA_FORMATS
from bank_node.serve_config import SERVE_READERS, SERVE_REFERENCE, ServeConfig, read_serve


@dataclass(frozen=True)
class NodeConfig:
    """Everything a bank node needs; paths are resolved relative to the config file."""

    portal_url: str
    bank: str
    credential_file: Path
    signing_key_file: Path
    secret_context_file: Path
    ckks_params_file: Path
    data_file: Path
    state_dir: Path
    # How data_file is read: "auto" recognises IBM AML, PaySim or ULB from the header; a
    # format's key names it (a header then missing one of its columns is refused).
    data_format: str = "auto"
    poll_interval_seconds: float = 2.0
    request_timeout_seconds: float = 60.0
    max_retries: int = 8
    torch_threads: int = 1
    # Worker processes that mask and encrypt a large v2 update (bank_node/encrypt_pool.py).
    encrypt_workers: int = 2
    metrics_port: int = 0
    # Keep each round's plaintext update beside the ciphertext in state_dir (local only),
    # so a test or an auditor at the bank can check the decrypted aggregate against it.
    keep_plaintext_updates: bool = False
    # Key directories (consortium.secret + ckks_params.json) of earlier key epochs.
    previous_key_dirs: tuple[Path, ...] = ()
    # The signed genesis roster version this bank received out of band (file or Secret).
    # Without it the node refuses to start (unless allow_unpinned_roster, below).
    genesis_file: Path | None = None
    # Send per-bank quality figures (AUPRC, recall, F1 on local held-out data) to the
    # portal after each round. Off by default: they describe this bank's data.
    report_metrics: bool = False
    # The model registry (bank_node/registry.py): how far, in AUPRC points on this bank's
    # held-out data, a new model may fall below the promoted one and still be promoted
    # automatically; and whether to tell the portal which version the node serves.
    promotion_tolerance: float = 0.02
    report_served_model: bool = False
    # Without a pinned genesis a node would believe the portal about members, keys and
    # policies: it refuses to start unless this is set (a test consortium, never production).
    allow_unpinned_roster: bool = False
    # A client certificate and key (PEM) the node presents to the portal when its ingress,
    # or the bank's egress gateway, asks for mutual TLS. Both or neither.
    tls_client_cert_file: Path | None = None
    tls_client_key_file: Path | None = None
    guardrails: Guardrails = Guardrails()  # noqa: RUF009 (frozen, so safe to share)
    evaluation: Evaluation = Evaluation()  # noqa: RUF009 (frozen, so safe to share)
    serve: ServeConfig = ServeConfig()  # noqa: RUF009 (frozen, so safe to share)
    training: TrainingConfig = TrainingConfig()  # noqa: RUF009 (frozen, so safe to share)

    @property
    def credential(self) -> str:
        return _read_secret(self.credential_file, "credential_file")

    @property
    def client_cert(self) -> tuple[str, str] | None:
        """(certificate, key) for requests' ``cert``, checked to exist; None without mTLS."""
        if self.tls_client_cert_file is None:
            return None
        files_check(self, "tls_client_cert_file", "tls_client_key_file")
        return str(self.tls_client_cert_file), str(self.tls_client_key_file)


PATH_FIELDS = {
    "credential_file",
    "signing_key_file",
    "secret_context_file",
    "ckks_params_file",
    "data_file",
    "state_dir",
    "genesis_file",
    "tls_client_cert_file",
    "tls_client_key_file",
}


# What belongs in each file the config points at: the fix when it is missing.
FILE_FIXES = {
    "credential_file": "the API credential the operator gave this bank "
    "(manage.py bank_onboard --credential-file)",
    "signing_key_file": "this bank's signing.key (bank-node signing-keygen)",
    "secret_context_file": "the consortium.secret of the key ceremony (bank-node keygen), "
    "with its integrity.key beside it",
    "ckks_params_file": "the ckks_params.json the key ceremony wrote with the context",
    "genesis_file": "the signed genesis the operator exported (manage.py roster_export)",
    "tls_client_cert_file": "the PEM client certificate the portal's TLS endpoint accepts",
    "tls_client_key_file": "the PEM private key of that client certificate",
}


def _read_secret(path: Path, name: str) -> str:
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"{name}: cannot read {path}: {exc.strerror}; put {FILE_FIXES[name]} there"
        ) from exc
    if not value:
        raise ConfigError(f"{name}: {path} is empty; put {FILE_FIXES[name]} there")
    return value


# The key files every command that signs or decrypts reads.
KEY_FIELDS = ("signing_key_file", "secret_context_file", "ckks_params_file")


def files_check(config: NodeConfig, *names: str) -> None:
    """Refuse a file field that points at no file, naming the field and what belongs there."""
    for name in names:
        path = getattr(config, name)
        if path is not None and not path.is_file():
            raise ConfigError(
                f"{name} = {str(path)!r}: no such file; put {FILE_FIXES[name]} there, or "
                f"point {name} at it"
            )


def load_config(path: Path) -> NodeConfig:
    """Parse and check ``path``; every problem names the file and the field."""
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    known = {f.name: f for f in fields(NodeConfig)}
    refuse_unknown(path, "", raw, known)
    missing = [n for n, f in known.items() if f.default is MISSING and n not in raw]
    if missing:
        raise ConfigError(
            f"{path}: missing field(s): {', '.join(missing)}; `bank-node init` writes a "
            f"node.toml with every field and its meaning ({REFERENCE_DOC})"
        )
    values = {name: _read_field(path, name, value) for name, value in raw.items()}
    _check_portal_url(path, values["portal_url"])
    if ("tls_client_cert_file" in values) != ("tls_client_key_file" in values):
        raise ConfigError(
            f"{path}: tls_client_cert_file and tls_client_key_file go together: set both "
            "(the client certificate and its private key) or neither"
        )
    return NodeConfig(**values)


def _read_field(path: Path, name: str, value: Any) -> Any:
    """One field's value, checked and converted; anything not listed is a string."""
    if name in PATH_FIELDS:
        return as_path(path, name, value)
    reader = FIELD_READERS.get(name)
    return reader(path, name, value) if reader is not None else as_text(path, name, value)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_portal_url(path: Path, url: str) -> None:
    """https anywhere; plain http only to this machine (the demo and the tests).

    Over plain http to another host, anyone on the path reads the bank's credential and
    can answer in the portal's name.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{path}: portal_url must look like https://portal.example, not {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"{path}: portal_url {url!r} uses plain http to another host, which would send "
            "the bank's credential in the clear; use https:// (plain http is accepted only "
            "for 127.0.0.1, localhost and [::1])"
        )


def _table_reader(
    readers: dict[str, Any] | None, read: Callable[[str, dict[str, Any], Path], Any]
) -> Callable[[Path, str, Any], Any]:
    """A table kept in its own module, its ValueError named by file; unknown keys refused
    (here with the nearest name, or by ``read`` itself when ``readers`` is None)."""

    def table(path: Path, name: str, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: [{name}] must be a table")
        if readers is not None:
            refuse_unknown(path, name, value, readers)
        try:
            return read(name, value, path.parent)
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    return table


def _fraction_or_zero(path: Path, name: str, value: Any) -> float:
    number = as_number(path, name, value)
    if number > 1:
        raise ConfigError(f"{path}: {name} is in AUPRC points, between 0 and 1, not {value!r}")
    return number


def _data_format(path: Path, name: str, value: Any) -> str:
    text = as_text(path, name, value)
    if text not in DATA_FORMATS:
        raise ConfigError(
            f"{path}: {name} must be one of {', '.join(DATA_FORMATS)} (got {value!r})"
        )
    return text


FIELD_READERS: dict[str, Callable[[Path, str, Any], Any]] = {
    "data_format": _data_format,
    "evaluation": _table_reader(None, read_evaluation),
    "serve": _table_reader(SERVE_READERS, read_serve),
    "training": _table_reader(TRAINING_READERS, read_training),
    "guardrails": read_guardrails,
    "report_metrics": as_flag,
    "report_served_model": as_flag,
    "promotion_tolerance": _fraction_or_zero,
    "allow_unpinned_roster": as_flag,
    "poll_interval_seconds": as_number,
    "request_timeout_seconds": as_number,
    "max_retries": as_integer,
    "torch_threads": as_integer,
    "encrypt_workers": as_integer,
    "metrics_port": as_integer,
    "previous_key_dirs": as_paths,
    "keep_plaintext_updates": as_flag,
}


# --- the reference of every field -------------------------------------------------------
# One entry per field of NodeConfig, and per key of its tables as "table.key": an example
# value (TOML) for a field without a default or whose default is "unset", and its meaning.
# `bank-node init` writes it as a commented node.toml and docs/node-config.md shows it as a
# table (bank_node/config_reference.py); a test fails when a field has no entry here.
FIELD_REFERENCE: dict[str, tuple[str | None, str]] = {
    "portal_url": (
        '"https://portal.consortium.example"',
        "The consortium portal. https://, or plain http:// to this machine only.",
    ),
    "bank": ('"my-bank"', "This bank's id (slug), as the operator onboarded it."),
    "credential_file": (
        '"credential"',
        "File holding the API credential the operator gave this bank (keep it 0600).",
    ),
    "signing_key_file": ('"signing.key"', "This bank's Ed25519 key (bank-node signing-keygen)."),
    "secret_context_file": (
        '"consortium.secret"',
        "The consortium's secret CKKS context from the key ceremony; integrity.key must sit "
        "beside it.",
    ),
    "ckks_params_file": ('"ckks_params.json"', "The CKKS parameters written with the context."),
    "data_file": (
        '"transactions.csv"',
        "This bank's transactions: IBM AML, PaySim or ULB creditcard CSV (from the header).",
    ),
    "state_dir": (
        '"state"',
        "Where the node keeps its round state, models and logs (created if missing).",
    ),
    "data_format": (
        None,
        "How data_file is read: auto (recognised from the header), ibm, paysim or ulb. The "
        "policy's feature set must find its columns there (docs/own-data.md, 'Feature sets').",
    ),
    "poll_interval_seconds": (None, "Seconds between two polls of the portal."),
    "request_timeout_seconds": (None, "Seconds before one request to the portal times out."),
    "max_retries": (None, "Retries of a failed request (with backoff) before giving up."),
    "torch_threads": (None, "CPU threads PyTorch may use for training."),
    "encrypt_workers": (
        None,
        "Processes that mask and encrypt a v2 update of at least 262,144 values in parallel "
        "(started while the node trains); 0: in the node's own process, as on a one-core node.",
    ),
    "metrics_port": (None, "Port of /metrics, /healthz and /readyz; 0: not served."),
    "keep_plaintext_updates": (
        None,
        "Keep each round's plaintext update beside its ciphertext in state_dir (local only, "
        "for a test or an auditor at the bank).",
    ),
    "previous_key_dirs": (
        None,
        "Key directories (consortium.secret, ckks_params.json, integrity.key) of earlier key "
        "epochs, to read aggregates made under them.",
    ),
    "genesis_file": (
        '"genesis.json"',
        "The signed genesis this bank received out of band; the node verifies every "
        "founder's signature and refuses to start without it (see allow_unpinned_roster).",
    ),
    "report_metrics": (
        None,
        "Send AUPRC, recall and F1 on this bank's held-out data to the portal after each "
        "round (they describe this bank's data).",
    ),
    "promotion_tolerance": (
        None,
        "How far (AUPRC points, 0.02 = two) a new model's AUPRC on this bank's held-out data "
        "may fall below the promoted model's and still be promoted automatically; a larger "
        "drop keeps it stored and held (docs/model-registry.md).",
    ),
    "report_served_model": (
        None,
        "Tell the portal which model version (and round) this node serves; the bank's page "
        "shows it.",
    ),
    "allow_unpinned_roster": (
        None,
        "Start without genesis_file, believing the portal about members and keys: a test "
        "consortium only, never production.",
    ),
    "tls_client_cert_file": (
        '"client.crt"',
        "PEM client certificate presented to the portal (mutual TLS); unset: none. Needs "
        "tls_client_key_file.",
    ),
    "tls_client_key_file": ('"client.key"', "The private key (PEM) of tls_client_cert_file."),
    **GUARDRAILS_REFERENCE,
    **EVALUATION_REFERENCE,
    **SERVE_REFERENCE,
    **TRAINING_REFERENCE,
}

__all__ = [
    "FIELD_REFERENCE",
    "KEY_FIELDS",
    "REFERENCE_DOC",
    "ConfigError",
    "Evaluation",
    "Guardrails",
    "NodeConfig",
    "ServeConfig",
    "TrainingConfig",
    "files_check",
    "load_config",
]

"""Key files on the bank's side: CKKS contexts, integrity key, signing and agreement keys.

Secret files are written 0600 and never logged; the secret context and the integrity key
are read from a path (a Kubernetes Secret volume in production) and never leave the node.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import tenseal as ts
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from he.errors import HEError
from he.integrity import integrity_key_check, integrity_key_new
from he.keys import (
    fingerprint,
    generate_secret_context,
    load_secret_context,
    public_context_bytes,
    secret_context_bytes,
)
from he.masking import public_bytes
from he.params import CkksParams
from he.signing import private_key_bytes, private_key_load, public_key_b64, signing_key_new

SECRET_CONTEXT = "consortium.secret"  # noqa: S105 - a file name, not a secret
PUBLIC_CONTEXT = "consortium.pub"
PARAMS = "ckks_params.json"
SIGNING_KEY = "signing.key"
SIGNING_PUB = "signing.pub"
# X25519 key agreement (pairwise secrets of secure aggregation); its public half goes into
# the signed roster with the signing key.
AGREEMENT_KEY = "agreement.key"
AGREEMENT_PUB = "agreement.pub"
# Beside the secret context, shipped with it to members only; the portal never gets it.
INTEGRITY_KEY = "integrity.key"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def ckks_keygen(out_dir: Path, params: CkksParams) -> str:
    """The key ceremony: secret context and integrity key (0600), public context, parameters."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / SECRET_CONTEXT).exists():
        raise FileExistsError(f"{out_dir / SECRET_CONTEXT} exists; refusing to overwrite a key")
    ctx = generate_secret_context(params)
    public = public_context_bytes(ctx)
    _write_private(out_dir / SECRET_CONTEXT, secret_context_bytes(ctx))
    _write_private(out_dir / INTEGRITY_KEY, integrity_key_new())
    (out_dir / PUBLIC_CONTEXT).write_bytes(public)
    (out_dir / PARAMS).write_text(json.dumps(params.to_dict(), indent=2) + "\n")
    return fingerprint(public)


def signing_keygen(out_dir: Path) -> str:
    """Write this bank's Ed25519 key pair; return the public key (base64)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / SIGNING_KEY).exists():
        raise FileExistsError(f"{out_dir / SIGNING_KEY} exists; refusing to overwrite a key")
    key = signing_key_new()
    _write_private(out_dir / SIGNING_KEY, private_key_bytes(key))
    (out_dir / SIGNING_PUB).write_text(public_key_b64(key) + "\n")
    return public_key_b64(key)


def agreement_keygen(out_dir: Path) -> str:
    """Write this bank's X25519 key-agreement pair; return the public key (base64, raw 32 bytes)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / AGREEMENT_KEY).exists():
        raise FileExistsError(f"{out_dir / AGREEMENT_KEY} exists; refusing to overwrite a key")
    key = X25519PrivateKey.generate()
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    _write_private(out_dir / AGREEMENT_KEY, raw)
    public = base64.b64encode(public_bytes(key)).decode()
    (out_dir / AGREEMENT_PUB).write_text(public + "\n")
    return public


@dataclass(frozen=True)
class Keyring:
    """What a node holds in memory while it runs."""

    secret_context: ts.Context
    params: CkksParams
    fingerprint: str
    signing_key: Ed25519PrivateKey
    integrity_key: bytes = field(repr=False)  # never in a log line
    # Keys of earlier epochs, by fingerprint: they still open aggregates made under them.
    previous: dict[str, tuple[ts.Context, CkksParams]] = field(default_factory=dict)
    previous_integrity: dict[str, bytes] = field(default_factory=dict, repr=False)
    # The roster X25519 key that seals and opens secure-aggregation share boxes (v2);
    # None when no agreement.key sits beside the signing key (a v1-only node).
    agreement_key: X25519PrivateKey | None = field(default=None, repr=False)

    def for_epoch(self, epoch_fingerprint: str) -> tuple[ts.Context, CkksParams]:
        """The secret context (and parameters) that decrypts data of ``epoch_fingerprint``."""
        if epoch_fingerprint == self.fingerprint:
            return self.secret_context, self.params
        if epoch_fingerprint in self.previous:
            return self.previous[epoch_fingerprint]
        raise HEError(
            f"this node holds no key for epoch {epoch_fingerprint[:16]}...; add that epoch's "
            "key directory to previous_key_dirs to read data encrypted under it"
        )

    def integrity_for(self, epoch_fingerprint: str) -> bytes:
        """The integrity key of ``epoch_fingerprint`` (checked by ``for_epoch``'s rule)."""
        self.for_epoch(epoch_fingerprint)
        if epoch_fingerprint == self.fingerprint:
            return self.integrity_key
        return self.previous_integrity[epoch_fingerprint]


def integrity_key_load(path: Path) -> bytes:
    """Read the integrity key written by the ceremony; a clear error when it is missing."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise HEError(
            f"{path} is missing: every key directory needs the {INTEGRITY_KEY} the key ceremony "
            "wrote beside the secret context; re-run `bank-node keygen` for a new epoch or "
            "copy it from the consortium's key bundle"
        ) from exc
    return integrity_key_check(data)


def agreement_key_load(path: Path) -> X25519PrivateKey:
    """Read this bank's raw 32-byte X25519 agreement key; HEError when it is not one."""
    data = path.read_bytes()
    if len(data) != 32:
        raise HEError(f"{path} is not a raw 32-byte X25519 key ({len(data)} bytes)")
    return X25519PrivateKey.from_private_bytes(data)


def _load_key_dir(
    secret_file: Path, params_file: Path
) -> tuple[ts.Context, CkksParams, str, bytes]:
    integrity = integrity_key_load(secret_file.parent / INTEGRITY_KEY)
    ctx = load_secret_context(secret_file.read_bytes())
    params = CkksParams.from_dict(json.loads(params_file.read_text()))
    return ctx, params, fingerprint(public_context_bytes(ctx)), integrity


def keyring_load(
    secret_context_file: Path,
    params_file: Path,
    signing_key_file: Path,
    previous_key_dirs: tuple[Path, ...] = (),
    agreement_key_file: Path | None = None,
) -> Keyring:
    """Load every key the node uses; the agreement key defaults to the signing key's folder."""
    ctx, params, fp, integrity = _load_key_dir(secret_context_file, params_file)
    agreement_file = agreement_key_file or signing_key_file.parent / AGREEMENT_KEY
    previous, previous_integrity = {}, {}
    for directory in previous_key_dirs:
        old_ctx, old_params, old_fp, old_integrity = _load_key_dir(
            directory / SECRET_CONTEXT, directory / PARAMS
        )
        previous[old_fp] = (old_ctx, old_params)
        previous_integrity[old_fp] = old_integrity
    return Keyring(
        secret_context=ctx,
        params=params,
        fingerprint=fp,
        signing_key=private_key_load(signing_key_file.read_bytes()),
        integrity_key=integrity,
        previous=previous,
        previous_integrity=previous_integrity,
        agreement_key=agreement_key_load(agreement_file) if agreement_file.exists() else None,
    )

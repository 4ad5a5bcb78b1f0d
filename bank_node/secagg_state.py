"""A v2 round's secrets on disk: ``state_dir/secagg/round-<n>.json``, written atomically, 0600.

The file holds a fresh X25519 mask key and self-mask seed, made once per round before
anything leaves the node, with what the node sent and answered for that round (its mask-key
post, the cohort keys its upload is masked towards, its one reveal). A restart reuses them:
the node never advertises two keys nor answers two unmask requests for one round.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bank_node.checks import Refused
from he.masking import SEED_BYTES
from he.recovery import RoundSecrets

SECAGG_DIR = "secagg"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class RoundFile:
    """What the node keeps about one v2 round (``state_dir/secagg/round-<n>.json``, 0600)."""

    round: int
    mask_key: str  # base64 raw X25519 private key, fresh for this round
    self_seed: str  # base64, 32 bytes
    own_share: str = ""  # base64 payload this bank dealt to itself
    post: dict[str, Any] | None = None  # the MaskKeysPost, resent unchanged on a retry
    posted: bool = False
    cohort_keys: dict[str, Any] | None = None  # the U1 this bank's upload is masked towards
    reveal: dict[str, Any] | None = None  # the one reveal this bank made for the round
    reveal_sent: bool = False

    def secrets(self) -> RoundSecrets:
        key = X25519PrivateKey.from_private_bytes(base64.b64decode(self.mask_key))
        return RoundSecrets(key, base64.b64decode(self.self_seed))


def round_path(state_dir: Path, number: int) -> Path:
    return state_dir / SECAGG_DIR / f"round-{number}.json"


def round_file_if_any(state_dir: Path, number: int) -> RoundFile | None:
    """The stored round file, or None; a damaged one is refused, never replaced."""
    path = round_path(state_dir, number)
    if not path.exists():
        return None
    try:
        return RoundFile(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        # A new key for a round already joined would be a second key: refuse instead.
        raise Refused(
            "secagg_state", f"round {number}: {path} is damaged ({exc}); not making new secrets"
        ) from None


def round_file(state_dir: Path, number: int) -> RoundFile:
    """This round's secrets: loaded when they exist, else made fresh and saved first."""
    stored = round_file_if_any(state_dir, number)
    if stored is not None:
        return stored
    fresh = RoundFile(
        round=number,
        mask_key=b64(X25519PrivateKey.generate().private_bytes_raw()),
        self_seed=b64(os.urandom(SEED_BYTES)),
    )
    save_round_file(state_dir, fresh)
    return fresh


def save_round_file(state_dir: Path, rf: RoundFile) -> None:
    """Write atomically with mode 0600 (the file holds the round's private mask key)."""
    folder = state_dir / SECAGG_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = round_path(state_dir, rf.round)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(dataclasses.asdict(rf), indent=2, sort_keys=True))
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)

"""A pinned four-bank roster and a fake portal that misbehaves on request (node tests only).

The real portal's roster API is exercised in tests/governance; here the operator is the
adversary, so a small fake lets each test hand the node exactly the lie it must refuse.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bank_node.config import Guardrails
from governance import (
    ApprovePolicy,
    Objection,
    PolicyApproval,
    RosterState,
    RosterVersion,
    apply,
    verify_objection,
)
from he.signing import sign, update_message_v2
from protocol import Manifest, ManifestInput, PolicySnapshot, RoundInfo
from tests.governance.roster_helpers import EPOCH, Ceremony, found, signed
from tests.protocol.messages import policy_dict, round_dict


@dataclass
class FakePortal:
    """Answers the roster calls of ``BankClient`` with whatever a test puts in it."""

    versions: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    objections: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    signatures: list[tuple[int, str]] = field(default_factory=list)
    detail: dict[int, RoundInfo] = field(default_factory=dict)
    uploads: list[int] = field(default_factory=list)
    current: RoundInfo | None = None
    rounds_listed: list[RoundInfo] = field(default_factory=list)
    reported: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    disputes: dict[int, dict[str, Any]] = field(default_factory=dict)
    clearances: list[tuple[int, str]] = field(default_factory=list)

    def roster(self, after: int | None = None) -> dict[str, Any]:
        return {"versions": self.versions, "pending": self.pending}

    def send_objection(self, objection: dict[str, Any], signature: str) -> dict[str, Any]:
        self.objections.append((objection, signature))
        return {}

    def sign_roster_version(self, number: int, signature: str) -> dict[str, Any]:
        self.signatures.append((number, signature))
        return {}

    def dispute(self, number: int) -> dict[str, Any]:
        return self.disputes[number]

    def clear_dispute(self, number: int, signature: str) -> dict[str, Any]:
        self.clearances.append((number, signature))
        return {"cleared": False}

    def round(self, number: int) -> RoundInfo:
        return self.detail[number]

    def upload_update(self, number: int, *args: Any, **kwargs: Any) -> None:
        self.uploads.append(number)

    def current_round(self) -> RoundInfo | None:
        return self.current

    def rounds(self, limit: int = 20) -> list[RoundInfo]:
        return list(self.rounds_listed)

    def download_aggregate(self, number: int, dest: Path) -> str:
        raise AssertionError("a refused aggregate must not be downloaded")

    def report_metrics(self, number: int, metrics: dict[str, Any]) -> None:
        self.reported.append((number, metrics))

    def reasons(self) -> list[str]:
        return [o["reason_code"] for o, _ in self.objections]


def write_genesis(ceremony: Ceremony, path: Path) -> Path:
    path.write_text(json.dumps(ceremony.genesis.to_dict()))
    return path


def approve_policy(ceremony: Ceremony, state: RosterState, policy: PolicySnapshot) -> RosterVersion:
    """A version approving ``policy``, signed by three of the four founders."""
    change = ApprovePolicy(PolicyApproval(policy.name, policy.version, policy.digest()))
    return signed(
        ceremony.propose(change, state), ceremony["alpha"], ceremony["beta"], ceremony["gamma"]
    )


def policy(**overrides: Any) -> PolicySnapshot:
    base = {"dp_target_epsilon": 4.0, "min_banks": 3} | overrides
    return PolicySnapshot.from_dict(policy_dict(**base))


def training_round(snapshot: PolicySnapshot, **overrides: Any) -> RoundInfo:
    data = round_dict(policy=snapshot.to_dict(), key_epoch=EPOCH, base_key_epoch=EPOCH)
    return RoundInfo.from_dict(data | overrides)


def governed() -> tuple[Ceremony, RosterState, PolicySnapshot]:
    """Four founders; version 1 approves a DP policy within the floor (epsilon 4 <= 8)."""
    ceremony = found()
    snapshot = policy()
    state = apply(ceremony.state, approve_policy(ceremony, ceremony.state, snapshot))
    return ceremony, state, snapshot


def signed_input(
    ceremony: Ceremony, bank: str, number: int, *, epsilon: float | None = 1.0
) -> ManifestInput:
    digest = hashlib.sha256(f"{bank}-{number}".encode()).hexdigest()
    message = update_message_v2(number, bank, digest, epsilon, True)
    signature = sign(ceremony[bank].key, message)
    return ManifestInput(bank, digest, signature, epsilon, True)


def manifest(number: int, inputs: list[ManifestInput], body: bytes = b"aggregate") -> Manifest:
    digest = hashlib.sha256(body).hexdigest()
    return Manifest(round=number, key_epoch=EPOCH, aggregate_digest=digest, inputs=tuple(inputs))


def objection_verifies(objection: dict[str, Any], signature: str, public_key: str) -> bool:
    return verify_objection(Objection.from_dict(objection), signature, public_key)


RAILS = Guardrails()
B64_ZERO = base64.b64encode(bytes(64)).decode()

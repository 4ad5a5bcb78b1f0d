"""Nodes through gated rounds against a relaying fake portal (node tests of the evaluation gate).

The portal here is honest and minimal, as in ``test_secagg_agents.py``: it keeps what the
nodes send and sums their v1 uploads with the public CKKS context, like the scheduler.
Training candidates are made by the test (each bank's tagged, signed update of chosen
weights), so a test picks a better or a worse candidate; evaluation rounds are played by
the real ``Agent``s. The portal's verdict endpoint is being built on another branch: here
``send_verdict`` records exactly what the node's client would post (docs/robustness.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from bank_node.agent import Agent
from bank_node.config import NodeConfig
from bank_node.keys import Keyring
from bank_node.portal_client import PortalError
from governance import PolicyApproval, PrivacyFloor, RosterState
from he.aggregate import sum_vectors
from he.codec import TRAILER_SLOTS, encrypt_to_file, pack_update
from he.integrity import tag_value
from he.keys import load_public_context
from he.params import CkksParams
from he.signing import sign, update_message_v2
from models.features import FEATURE_NAMES
from models.gate import GATE_VECTOR_LENGTH
from models.nets import build_model
from models.vector import vector_length
from protocol import Manifest, ManifestInput, PolicySnapshot, RoundInfo
from tests.governance.roster_helpers import Ceremony
from tests.protocol.messages import policy_dict, round_dict

PARAMS = CkksParams()
SPEC = {"kind": "mlp", "hidden": [8], "seed": 1, "loss": "bce"}
N_FEATURES = len(FEATURE_NAMES)
TOLERANCE = 0.005
# The banks that take part; each reads its own bank file of the world (bank_1.csv, ...).
GATED_BANKS = ("alpha", "beta", "gamma")


def gated_policy() -> PolicySnapshot:
    """A v1 policy (one shared key, no masks) whose training rounds pass the gate."""
    length = vector_length(build_model(SPEC, N_FEATURES)) + TRAILER_SLOTS
    fields = policy_dict(
        model_spec=SPEC,
        n_features=N_FEATURES,
        vector_length=length,
        normalize_features=False,
        secure_aggregation="v1",
        min_banks=3,
        gate_tolerance=TOLERANCE,
    )
    return PolicySnapshot.from_dict(fields)


def pinned_roster(ceremony: Ceremony, fingerprint: str, policy: PolicySnapshot) -> RosterState:
    """The founders' roster with this key epoch in force and the policy approved."""
    approval = PolicyApproval(policy.name, policy.version, policy.digest())
    return dataclasses.replace(
        ceremony.state,
        key_epochs=(fingerprint,),
        policies=(approval,),
        privacy=PrivacyFloor(dp_required=False),
    )


class PinnedRoster:
    """Stands in for ``RosterKeeper``: the verified state, nothing new to fetch."""

    def __init__(self, state: RosterState) -> None:
        self.state = state

    def refresh(self, client: Any, objector: Any) -> int:
        return 0


@dataclasses.dataclass(frozen=True)
class Upload:
    path: Path
    digest: str
    signature: str


class GatePortal:
    """The rounds as the portal would serve them, and what the nodes sent it."""

    def __init__(self, tmp: Path, ckks: Any, ceremony: Ceremony, integrity: bytes) -> None:
        self.tmp, self.ckks, self.ceremony, self.integrity = tmp, ckks, ceremony, integrity
        self.policy = gated_policy()
        self.rounds: dict[int, RoundInfo] = {}
        self.current: RoundInfo | None = None
        self.uploads: dict[int, dict[str, Upload]] = {}
        self.blobs: dict[int, Path] = {}
        self.verdicts: list[tuple[str, int, dict[str, Any], str]] = []
        self.objections: list[tuple[str, dict[str, Any], str]] = []
        self.verdicts_unreachable = False  # send_verdict fails as after the client's retries

    @property
    def fingerprint(self) -> str:
        return str(self.ckks.fingerprint)

    def view(self, bank: str) -> BankView:
        return BankView(self, bank)

    def round_info(self, number: int, **fields: Any) -> RoundInfo:
        """A round of the gated policy; ``fields`` as the wire names them."""
        base = fields.get("base_round")
        data = {
            "number": number,
            "policy": self.policy.to_dict(),
            "key_epoch": self.fingerprint,
            "vector_length": self.policy.vector_length,
            "stats_round": None,
            "base_round": None,
            "base_key_epoch": self.fingerprint if base is not None else None,
        }
        return RoundInfo.from_dict(round_dict(**(data | fields)))

    def publish_candidate(
        self, number: int, weights: np.ndarray, base: int | None = None, *, blob: bytes = b""
    ) -> RoundInfo:
        """Training round ``number``, every bank having sent ``weights`` (or a forged ``blob``)."""
        self.uploads[number] = {}
        for i, bank in enumerate(GATED_BANKS):
            tag = tag_value(self.integrity, self.fingerprint, number, bank)
            path = self.tmp / f"update-{number}-{bank}.ckks"
            values = pack_update(weights, 100 * (i + 1), tag)
            digest = encrypt_to_file(self.ckks.secret, values, PARAMS, self.fingerprint, path)
            signature = sign(self.ceremony[bank].key, update_message_v2(number, bank, digest))
            self.uploads[number][bank] = Upload(path, digest, signature)
        return self.publish(number, self.round_info(number, base_round=base), forged=blob)

    def open_evaluation(self, number: int, candidate: int, base: int | None) -> RoundInfo:
        self.current = self.round_info(
            number,
            kind="evaluation",
            candidate_round=candidate,
            base_round=base,
            vector_length=GATE_VECTOR_LENGTH + TRAILER_SLOTS,
        )
        self.uploads[number] = {}
        return self.current

    def close_evaluation(self) -> RoundInfo:
        """Sum the nodes' uploads and publish; the candidate now names its gate round."""
        assert self.current is not None
        rnd, self.current = self.current, None
        published = self.publish(rnd.number, rnd)
        assert rnd.candidate_round is not None
        candidate = self.rounds[rnd.candidate_round]
        self.rounds[candidate.number] = dataclasses.replace(candidate, gate_round=rnd.number)
        return published

    def publish(self, number: int, rnd: RoundInfo, *, forged: bytes = b"") -> RoundInfo:
        """The scheduler's sum of ``uploads[number]`` (or ``forged``), with its manifest."""
        out = self.blobs[number] = self.tmp / f"aggregate-{number}.ckks"
        uploads = self.uploads[number]
        if forged:
            out.write_bytes(forged)
        else:
            public = load_public_context(self.ckks.public_bytes, PARAMS)
            with open(out, "wb") as stream:
                sum_vectors([uploads[b].path for b in sorted(uploads)], public, PARAMS, stream)
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        inputs = tuple(
            ManifestInput(b, uploads[b].digest, uploads[b].signature) for b in sorted(uploads)
        )
        manifest = Manifest(number, self.fingerprint, digest, inputs)
        published = dataclasses.replace(
            rnd, state="published", manifest=manifest, aggregate_digest=digest
        )
        self.rounds[number] = published
        return published


@dataclasses.dataclass
class BankView:
    """One bank's authenticated client on the gate portal."""

    portal: GatePortal
    bank: str

    def current_round(self) -> RoundInfo | None:
        return self.portal.current

    def rounds(self, limit: int = 20) -> list[RoundInfo]:
        return sorted(self.portal.rounds.values(), key=lambda r: -r.number)[:limit]

    def round(self, number: int) -> RoundInfo:
        current = self.portal.current
        return current if current and current.number == number else self.portal.rounds[number]

    def download_aggregate(self, number: int, dest: Path) -> str:
        dest.write_bytes(self.portal.blobs[number].read_bytes())
        return hashlib.sha256(dest.read_bytes()).hexdigest()

    def upload_update(self, number: int, path: Path, digest: str, signature: str, **_: Any) -> None:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        kept = self.portal.tmp / f"update-{number}-{self.bank}.ckks"
        kept.write_bytes(path.read_bytes())
        self.portal.uploads[number][self.bank] = Upload(kept, digest, signature)

    def send_verdict(self, number: int, verdict: dict[str, Any], signature: str) -> dict[str, Any]:
        if self.portal.verdicts_unreachable:
            raise PortalError(None, f"POST rounds/{number}/verdicts failed after 9 attempts")
        self.portal.verdicts.append((self.bank, number, verdict, signature))
        return {}

    def send_objection(self, objection: dict[str, Any], signature: str) -> dict[str, Any]:
        self.portal.objections.append((self.bank, objection, signature))
        return {}

    def roster(self, after: int | None = None) -> dict[str, Any]:
        return {"versions": [], "pending": []}

    def report_metrics(self, number: int, metrics: dict[str, Any]) -> None:
        return None


def gate_agent(portal: Any, bank: str, data_file: Path, roster: RosterState, home: Path) -> Agent:
    """The real node of ``bank`` on ``data_file``, its state in ``home``.

    ``portal`` has ``ckks``, ``ceremony``, ``integrity`` and ``view(bank)``.
    """
    config = NodeConfig(
        portal_url="http://127.0.0.1:9",
        bank=bank,
        credential_file=home / "none",
        signing_key_file=home / "none",
        secret_context_file=home / "none",
        ckks_params_file=home / "none",
        data_file=data_file,
        state_dir=home / "state",
    )
    keys = Keyring(
        secret_context=portal.ckks.secret,
        params=PARAMS,
        fingerprint=portal.ckks.fingerprint,
        signing_key=portal.ceremony[bank].key,
        integrity_key=portal.integrity,
        agreement_key=portal.ceremony[bank].agreement,  # v2 share boxes
    )
    client, keeper = portal.view(bank), PinnedRoster(roster)
    return Agent(config, keys, client, keeper)  # type: ignore[arg-type]  # the fake portal

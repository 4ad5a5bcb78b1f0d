"""The founding ceremony and an approved roster change, as the demo and the e2e tests run them.

In a real consortium every step happens at a different bank, after its security team has
read what it signs (``bank-node roster sign-genesis``, ``bank-node roster approve``). Here
one process plays every bank, but each signature is made with that bank's own key files and
sent with that bank's own API credential, through the portal's REST API, and every version
is verified with ``governance`` exactly as a node verifies it. The operator only proposes
and relays: nothing here can make a version valid without the banks' keys.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bank_node.keys import (
    AGREEMENT_PUB,
    INTEGRITY_KEY,
    PARAMS,
    SECRET_CONTEXT,
    SIGNING_KEY,
    agreement_keygen,
    signing_keygen,
)
from bank_node.portal_client import BankClient, OperatorClient
from governance import (
    DEFAULT_RULE,
    AdmitBank,
    Change,
    Member,
    PolicyApproval,
    PrivacyFloor,
    RosterState,
    RosterVersion,
    Rule,
    apply,
    change_to_dict,
    genesis_draft,
    sign_version,
    verify_genesis,
)
from he.signing import private_key_load, public_key_b64
from protocol import MIN_BANKS_FLOOR, PolicySnapshot

__all__ = [
    "DEFAULT_RULE",
    "GENESIS_FILE",
    "AdmitBank",
    "Bank",
    "CeremonyError",
    "approval_of",
    "approve_change",
    "bank_prepare",
    "draft_genesis",
    "found",
    "verify_genesis",
    "write_genesis",
]

GENESIS_FILE = "genesis.json"


class CeremonyError(RuntimeError):
    """The portal answered something a bank must not sign."""


@dataclass(frozen=True)
class Bank:
    """One bank's side of the ceremony: its directory of key files and its API credential."""

    slug: str
    home: Path
    credential: str
    name: str = ""

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        return private_key_load((self.home / SIGNING_KEY).read_bytes())

    def member(self) -> Member:
        agreement = (self.home / AGREEMENT_PUB).read_text().strip()
        return Member(
            self.slug, self.name or self.slug, public_key_b64(self.signing_key), agreement
        )

    def client(self, url: str) -> BankClient:
        return BankClient(url, self.credential)


def bank_prepare(home: Path, bundle: Path, op: OperatorClient) -> Bank:
    """A new bank's directory: the consortium key bundle, its own signing and X25519 keys,
    and the API account the operator opens for it (credential file 0600).

    ``home``'s name is the bank's slug; the bank still registers its signing key and
    writes its node config itself.
    """
    home.mkdir(parents=True)
    for name in (SECRET_CONTEXT, INTEGRITY_KEY, PARAMS):
        shutil.copy2(bundle / name, home / name)
    signing_keygen(home)
    agreement_keygen(home)
    credential = str(op.bank_create(home.name)["credential"])
    (home / "credential").write_text(credential)
    (home / "credential").chmod(0o600)
    return Bank(home.name, home, credential)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def approval_of(policy: dict[str, Any]) -> PolicyApproval:
    """The approval of a policy as the operator's API returns it, digest recomputed here."""
    snapshot = PolicySnapshot.from_dict(policy["snapshot"])
    if snapshot.digest() != policy["digest"]:
        raise CeremonyError("the portal's policy digest does not match the snapshot it shows")
    return PolicyApproval(snapshot.name, snapshot.version, snapshot.digest())


def draft_genesis(
    consortium_id: str,
    founders: Sequence[Bank],
    *,
    key_epoch: str,
    policies: Sequence[PolicyApproval] = (),
    min_banks: int = MIN_BANKS_FLOOR,
    rule: Rule = DEFAULT_RULE,
    privacy: PrivacyFloor | None = None,
) -> RosterVersion:
    """The unsigned charter every founder is asked to sign (``governance.genesis_draft``)."""
    return genesis_draft(
        consortium_id,
        [bank.member() for bank in founders],
        key_epochs=(key_epoch,),
        created_at=_now(),
        policies=policies,
        min_banks=min_banks,
        rule=rule,
        privacy=privacy,
    )


def found(
    url: str, op: OperatorClient, founders: Sequence[Bank], genesis: RosterVersion
) -> RosterVersion:
    """The operator relays the draft; every founder signs it with its own key."""
    op.roster_propose(genesis=genesis.to_dict())
    signatures = {}
    for bank in founders:
        signatures[bank.slug] = sign_version(genesis, bank.slug, bank.signing_key)
        bank.client(url).sign_roster_version(0, signatures[bank.slug])
    signed = dataclasses.replace(genesis, signatures=signatures)
    verify_genesis(signed)  # as every node does with the copy it is given
    return signed


def approve_change(
    url: str,
    op: OperatorClient,
    state: RosterState,
    change: Change,
    approvers: Sequence[Bank],
    subject: Bank | None = None,
) -> tuple[RosterVersion, RosterState]:
    """The operator proposes ``change``; each approver checks it and signs.

    Each bank signs only after checking that the version the portal shows is ``change`` on
    top of the roster it verified itself. ``subject`` is a bank admitted (or rotating its
    keys) that must also sign under the key it declares. Returns the signed version and the
    roster after it, verified.
    """
    proposed = RosterVersion.from_dict(op.roster_propose(change=change_to_dict(change))["version"])
    expected = (state.consortium_id, state.version + 1, state.head_hash, change_to_dict(change))
    shown = (
        proposed.consortium_id,
        proposed.number,
        proposed.previous_hash,
        change_to_dict(proposed.change),
    )
    if shown != expected:
        raise CeremonyError(f"the portal proposed version {proposed.number}, not the change asked")
    signatures = {}
    for bank in [*approvers, *([subject] if subject is not None else [])]:
        signatures[bank.slug] = sign_version(proposed, bank.slug, bank.signing_key)
        bank.client(url).sign_roster_version(proposed.number, signatures[bank.slug])
    signed = dataclasses.replace(proposed, signatures=signatures)
    return signed, apply(state, signed)


def write_genesis(version: RosterVersion, path: Path) -> Path:
    """What each bank keeps out of band and pins in its node config (``genesis_file``)."""
    path.write_text(json.dumps(version.to_dict(), indent=2, sort_keys=True) + "\n")
    return path

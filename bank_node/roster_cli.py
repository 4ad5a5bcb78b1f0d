"""`bank-node roster ...`: see the verified roster, approve or reject changes, clear disputes.

A bank signs only what its own node has verified: ``approve`` checks the pending version
against the roster this node pinned and verified, shows it in plain words, then signs.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bank_node.config import ConfigError, NodeConfig, files_check, load_config
from bank_node.objections import Objector
from bank_node.portal_client import BankClient, PortalError
from bank_node.roster import RosterKeeper
from governance import (
    Charter,
    Genesis,
    Pending,
    RosterError,
    RosterState,
    RosterVersion,
    describe,
    parse_version_json,
    pending_approvals,
    public_key_b64,
    sign_clearance,
    sign_version,
    version_hash,
)
from governance.encoding import key_hint
from he.signing import private_key_load

log = logging.getLogger("bank_node")


class _Node:
    """What the roster commands share: config, key, portal client, verified roster."""

    def __init__(self, config: NodeConfig) -> None:
        files_check(config, "signing_key_file", "credential_file")
        self.config = config
        self.key: Ed25519PrivateKey = private_key_load(config.signing_key_file.read_bytes())
        self.client = BankClient(
            config.portal_url,
            config.credential,
            timeout=config.request_timeout_seconds,
            max_retries=config.max_retries,
            client_cert=config.client_cert,
        )
        if config.genesis_file is None:
            raise ConfigError(
                "roster commands need genesis_file in the node config: the signed genesis "
                "this bank received out of band"
            )
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.keeper = RosterKeeper(config.genesis_file, config.state_dir)
        self.objector = Objector(
            self.client, config.bank, self.key, lambda: self.keeper.state.consortium_id
        )

    def refreshed(self) -> RosterState:
        self.keeper.refresh(self.client, self.objector)
        return self.keeper.state


def state_lines(state: RosterState) -> list[str]:
    """The verified roster in plain words."""
    return [
        f"consortium {state.consortium_id!r}, roster version {state.version} "
        f"(hash {state.head_hash[:16]}…), verified by this node",
        *charter_lines(state),
    ]


def charter_lines(state: Charter) -> list[str]:
    """Members, keys, rule, floors, epochs and policies of a charter, one fact a line."""
    lines = [
        f"approval rule: {state.rule}; min_banks {state.min_banks}; privacy: {state.privacy}",
        "members:",
    ]
    for m in state.members:
        lines.append(
            f"  {m.bank_id:<16} {m.status:<9} {m.name} (signing {key_hint(m.signing_key)}, "
            f"agreement {key_hint(m.agreement_key)})"
        )
    lines.append(
        "key epochs in force: " + (", ".join(e[:16] + "…" for e in state.key_epochs) or "none")
    )
    lines.append("approved round policies:")
    lines += [f"  {p.name!r} v{p.version} (sha256 {p.digest[:16]}…)" for p in state.policies]
    if not state.policies:
        lines.append("  none")
    return lines


def pending_lines(version: RosterVersion, state: RosterState, pending: Pending | str) -> list[str]:
    """One pending version: what it does, who signed, what is missing."""
    head = f"version {version.number} (hash {version_hash(version)[:16]}…)"
    if isinstance(pending, str):
        return [f"{head}: can never take effect on this node's roster: {pending}"]
    return [
        f"{head}: {describe(version.change, state)}",
        f"  signed: {', '.join(pending.signed) or 'nobody yet'}; "
        f"not yet signed: {', '.join(pending.missing) or 'nobody'}",
        "  " + (pending.shortfall() or "complete: takes effect once the portal records it"),
    ]


def cmd_show(args: argparse.Namespace) -> int:
    node = _Node(load_config(Path(args.config)))
    try:
        state = node.refreshed()
    except PortalError as exc:
        log.warning("portal unreachable (%s); showing the roster verified so far", exc)
        state = node.keeper.state
    print("\n".join(state_lines(state)))
    return 0


def cmd_pending(args: argparse.Namespace) -> int:
    node = _Node(load_config(Path(args.config)))
    state = node.refreshed()
    found = node.keeper.pending(node.client)
    if not found:
        print(f"no pending roster change (roster version {state.version} in force)")
    for version, pending in found:
        print("\n".join(pending_lines(version, state, pending)))
    return 0


def _pending_version(node: _Node, number: int) -> RosterVersion:
    for version, _ in node.keeper.pending(node.client):
        if version.number == number:
            return version
    raise ConfigError(f"no pending roster version {number} on the portal")


def cmd_approve(args: argparse.Namespace) -> int:
    node = _Node(load_config(Path(args.config)))
    state = node.refreshed()
    version = _pending_version(node, args.number)
    try:
        pending_approvals(state, version)  # raises when it can never apply to our roster
    except RosterError as exc:
        raise ConfigError(f"refusing to sign: {exc}") from exc
    print(f"This bank ({node.config.bank}) signs roster version {version.number}:")
    print("  " + describe(version.change, state))
    if not args.yes and input("Sign it? [y/N] ").strip().lower() not in {"y", "yes"}:
        print("not signed")
        return 1
    signature = sign_version(version, node.config.bank, node.key)
    node.client.sign_roster_version(version.number, signature)
    print(json.dumps({"version": version.number, "bank": node.config.bank, "signed": True}))
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    node = _Node(load_config(Path(args.config)))
    node.refreshed()
    version = _pending_version(node, args.number)
    message = (
        f"bank {node.config.bank} rejects roster version {version.number} "
        f"({version_hash(version)[:16]}…): {args.reason}"
    )
    objection = node.objector.refuse(0, "roster_rejected", message)
    print(json.dumps({"version": version.number, "rejected": objection is not None}))
    return 0


def cmd_clear_dispute(args: argparse.Namespace) -> int:
    """Sign the clearance of a disputed round: this bank no longer objects to building on it."""
    node = _Node(load_config(Path(args.config)))
    state = node.refreshed()
    shown = node.client.dispute(args.number)
    objectors = ", ".join(map(str, shown.get("objectors", []))) or "nobody"
    clearers = ", ".join(map(str, shown.get("clearers", []))) or "nobody yet"
    print(
        f"Round {args.number} of consortium {state.consortium_id!r} (as the portal reports it): "
        f"objected to by {objectors}; clearance signed by {clearers}; "
        f"{shown.get('threshold', '?')} banks needed"
    )
    print(f"This bank ({node.config.bank}) signs: clear dispute of round {args.number}")
    if not args.yes and input("Sign it? [y/N] ").strip().lower() not in {"y", "yes"}:
        print("not signed")
        return 1
    signature = sign_clearance(state.consortium_id, args.number, node.key)
    after = node.client.clear_dispute(args.number, signature)
    print(
        json.dumps(
            {"round": args.number, "bank": node.config.bank, "cleared": after.get("cleared")}
        )
    )
    return 0


def cmd_sign_genesis(args: argparse.Namespace) -> int:
    """The founding ceremony: show a draft genesis, sign it with this bank's key."""
    config = load_config(Path(args.config))
    files_check(config, "signing_key_file", *(["credential_file"] if args.post else []))
    key = private_key_load(config.signing_key_file.read_bytes())
    try:
        draft = parse_version_json(Path(args.file).read_bytes())
        pending_approvals(None, draft)  # a well-formed genesis whatever is signed so far
    except (OSError, RosterError) as exc:
        raise ConfigError(f"{args.file}: not a genesis this bank can sign: {exc}") from exc
    assert isinstance(draft.change, Genesis)  # checked by pending_approvals
    charter = draft.change.charter
    founder = charter.member(config.bank)
    if founder is None or founder.signing_key != public_key_b64(key):
        raise ConfigError(
            f"{args.file} does not name bank {config.bank!r} with this node's signing key"
        )
    print("\n".join(["Draft genesis:", describe(draft.change, None), *charter_lines(charter)]))
    signature = sign_version(draft, config.bank, key)
    if args.post:
        client = BankClient(
            config.portal_url,
            config.credential,
            max_retries=config.max_retries,
            client_cert=config.client_cert,
        )
        client.sign_roster_version(0, signature)
    print(json.dumps({"bank_id": config.bank, "signature": signature}))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    roster = sub.add_parser(
        "roster", help="the consortium's signed roster, as this node verifies it"
    )
    actions = roster.add_subparsers(dest="roster_command", required=True)
    for name, func, helptext in [
        ("show", cmd_show, "members, keys, rule, floors, policies and epochs in force"),
        ("pending", cmd_pending, "pending changes in plain words: who signed, what is missing"),
        ("approve", cmd_approve, "verify a pending version, show it, sign it"),
        ("reject", cmd_reject, "send a signed objection to a pending version"),
        ("sign-genesis", cmd_sign_genesis, "founding ceremony: sign a draft genesis"),
        ("clear-dispute", cmd_clear_dispute, "sign the clearance of a disputed round"),
    ]:
        c = actions.add_parser(name, help=helptext)
        c.add_argument("--config", required=True, help="node configuration (TOML)")
        c.set_defaults(func=func)
        if name in {"approve", "reject"}:
            c.add_argument("number", type=int, help="the pending roster version's number")
        if name == "clear-dispute":
            c.add_argument("number", type=int, help="the disputed round's number")
        if name in {"approve", "clear-dispute"}:
            c.add_argument("--yes", action="store_true", help="sign without asking")
        if name == "reject":
            c.add_argument("--reason", required=True, help="why, in words the other banks read")
        if name == "sign-genesis":
            c.add_argument("file", help="the draft genesis version (JSON)")
            c.add_argument("--post", action="store_true", help="also send it to the portal")

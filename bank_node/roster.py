"""The node's pinned roster: a genesis received out of band, and every later version verified here.

The portal relays roster versions; this module never believes them. It starts from the
genesis file, re-verifies the chain it stored (``state_dir/roster.json``) from that
genesis on every start, and applies each newer version with ``governance.apply``. A
version that does not verify is refused (log line, metric, signed objection) and the node
keeps working from the last version it verified.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from bank_node import metrics as node_metrics
from bank_node.config import ConfigError
from bank_node.objections import Objector
from bank_node.portal_client import BankClient
from governance import (
    Pending,
    RosterError,
    RosterState,
    RosterVersion,
    apply,
    parse_version_json,
    pending_approvals,
    verify_genesis,
    version_hash,
)

log = logging.getLogger("bank_node")

ROSTER_FILE = "roster.json"


class PinError(ConfigError):
    """The genesis file is missing, forged, or does not name this bank with this key."""


def load_genesis(path: Path) -> tuple[RosterVersion, RosterState]:
    """The pinned genesis and the state it founds, verified (every founder signed it)."""
    try:
        genesis = parse_version_json(path.read_bytes())
        return genesis, verify_genesis(genesis)
    except OSError as exc:
        raise PinError(f"genesis_file: cannot read {path}: {exc.strerror}") from exc
    except RosterError as exc:
        raise PinError(f"genesis_file {path}: refused: {exc}") from exc


def parse_relayed(raw: Any) -> RosterVersion:
    """One version as ``GET /roster`` relays it (bare, or under ``version``); RosterError."""
    body = raw.get("version") if isinstance(raw, dict) and "version" in raw else raw
    return RosterVersion.from_dict(body)


class RosterKeeper:
    """The verified roster chain this node acts on, and how it grows."""

    def __init__(self, genesis_file: Path, state_dir: Path) -> None:
        self.genesis, self.state = load_genesis(genesis_file)
        self.path = state_dir / ROSTER_FILE
        self.versions: list[RosterVersion] = []
        self.hashes: dict[int, str] = {0: self.state.head_hash}
        self._load()
        node_metrics.roster_pinned(self.state.version)

    # --- the stored chain, never trusted from disk alone ---------------------------------

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            stored = json.loads(self.path.read_text())
            if stored.get("genesis_hash") != self.hashes[0]:
                log.warning(
                    "%s belongs to another genesis; starting from the pinned one", self.path
                )
                return
            for raw in stored["versions"]:
                self._apply(RosterVersion.from_dict(raw))
        except (ValueError, KeyError, TypeError, AttributeError, RosterError) as exc:
            # Whatever verified before the bad entry stands; the rest is fetched again.
            log.warning("%s: stored roster verified up to version %d only: %s",
                        self.path, self.state.version, exc)  # fmt: skip

    def _save(self) -> None:
        body = {
            "genesis_hash": self.hashes[0],
            "versions": [v.to_dict() for v in self.versions],
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2, sort_keys=True))
        os.replace(tmp, self.path)

    def _apply(self, version: RosterVersion) -> None:
        self.state = apply(self.state, version)
        self.versions.append(version)
        self.hashes[version.number] = self.state.head_hash

    # --- growing it -------------------------------------------------------------------------

    def check_names(self, bank: str, signing_key: str) -> None:
        """Refuse to run for a roster that does not hold this bank under this node's key."""
        member = self.state.member(bank)
        if member is None or member.signing_key != signing_key:
            what = "does not name bank" if member is None else "names with another key bank"
            raise PinError(
                f"the verified roster (version {self.state.version}) {what} {bank!r}; this "
                "node's signing key is not a roster key: check genesis_file and signing_key_file"
            )

    def refresh(self, client: BankClient, objector: Objector) -> int:
        """Fetch newer versions, verify and keep each; the number of versions added."""
        data = client.roster(after=self.state.version)
        added = 0
        for raw in data["versions"]:
            version = self._parse(raw, objector)
            if version is None:
                break
            if not self._is_new(version, objector):
                continue
            try:
                self._apply(version)
            except RosterError as exc:
                objector.refuse(0, "roster_invalid", f"roster version refused: {exc}")
                break  # later versions cannot link to a refused one
            added += 1
            log.info("roster version %d verified and in force here", version.number)
        if added:
            self._save()
            node_metrics.roster_pinned(self.state.version)
        return added

    def _parse(self, raw: Any, objector: Objector) -> RosterVersion | None:
        try:
            return parse_relayed(raw)
        except RosterError as exc:
            objector.refuse(0, "roster_invalid", f"malformed roster version: {exc}")
            return None

    def _is_new(self, version: RosterVersion, objector: Objector) -> bool:
        """False for a version already held; a different one under a held number is a fork."""
        known = self.hashes.get(version.number)
        if known is None:
            return True
        if known != version_hash(version):
            objector.refuse(
                0,
                "roster_fork",
                f"roster version {version.number}: the portal shows a version that differs from "
                f"the one this node verified ({known[:16]}…): a rewritten or split history",
            )
        return False

    def pending(self, client: BankClient) -> list[tuple[RosterVersion, Pending | str]]:
        """Pending versions the portal relays, each checked against this node's roster."""
        out: list[tuple[RosterVersion, Pending | str]] = []
        for raw in client.roster(after=self.state.version).get("pending", []):
            body = raw.get("version") if isinstance(raw, dict) else raw
            try:
                version = RosterVersion.from_dict(body)
            except RosterError as exc:
                log.warning("malformed pending version: %s", exc)
                continue
            try:
                out.append((version, pending_approvals(self.state, version)))
            except RosterError as exc:
                out.append((version, str(exc)))
        return out

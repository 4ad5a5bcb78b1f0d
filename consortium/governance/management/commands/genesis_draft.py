"""Draft the founding charter from the founders' public key files, for every founder to sign."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from consortium.governance import selectors as roster
from consortium.governance.services import roster_genesis_propose
from consortium.members.selectors import bank_get
from consortium.operator_cli import cli_actor, file_text, refusals
from consortium.rounds.selectors import key_epoch_current, policy_get_by_version
from governance import (
    DEFAULT_RULE,
    MIN_BANKS_FLOOR,
    Member,
    PolicyApproval,
    PrivacyFloor,
    RosterError,
    RosterVersion,
    Rule,
    describe,
    genesis_draft,
)

SIGNING_PUB, AGREEMENT_PUB = "signing.pub", "agreement.pub"
KEYS_FIX = "put the signing.pub and agreement.pub that `bank-node signing-keygen` wrote there"


def founder_member(spec: str) -> Member:
    """``SLUG=DIR``: the founder's id and the directory holding its two public key files."""
    slug, sep, directory = spec.partition("=")
    if not sep or not slug or not directory:
        raise CommandError(f"--bank {spec!r}: write SLUG=DIR, e.g. --bank alpha=keys/alpha")
    keys = {
        name: file_text(Path(directory) / name, f"bank {slug!r}'s public key", KEYS_FIX).strip()
        for name in (SIGNING_PUB, AGREEMENT_PUB)
    }
    bank = bank_get(slug)
    try:
        return Member(slug, bank.name if bank else slug, keys[SIGNING_PUB], keys[AGREEMENT_PUB])
    except RosterError as exc:
        raise CommandError(f"--bank {spec!r}: {exc}; {KEYS_FIX}") from None


def policy_approval(spec: str) -> PolicyApproval:
    """``NAME:VERSION`` of a policy on this portal, pinned by its snapshot's digest."""
    name, _, version = spec.rpartition(":")
    policy = policy_get_by_version(name, int(version)) if version.isdigit() else None
    if policy is None:
        raise CommandError(
            f"--policy {spec!r}: no such policy version; write NAME:VERSION of one that "
            "`manage.py consortium_status` lists (create it with policy_create first)"
        )
    return PolicyApproval(policy.name, policy.version, roster.policy_digest(policy))


def approval_rule(text: str, k_min: int) -> Rule:
    numerator, sep, denominator = text.partition("/")
    if not (sep and numerator.isdigit() and denominator.isdigit()):
        raise CommandError(f"--rule {text!r}: write a fraction such as 2/3")
    return Rule(int(numerator), int(denominator), k_min)


def current_epoch() -> str:
    epoch = key_epoch_current()
    if epoch is None:
        raise CommandError(
            "no key epoch is registered: run `manage.py key_epoch_register --context-file "
            "consortium.pub` first, or pass --key-epoch FINGERPRINT"
        )
    return epoch.fingerprint


class Command(BaseCommand):
    help = (
        "Draft the genesis (version 0) from each founder's signing.pub and agreement.pub, the "
        "current key epoch and the policies to approve; write it to --out for every founder "
        "to sign with `bank-node roster sign-genesis FILE --post`; --propose also stores it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--consortium-id", required=True, help="a slug, e.g. acme-aml")
        parser.add_argument(
            "--bank", action="append", required=True, metavar="SLUG=DIR", help="a founder"
        )
        parser.add_argument("--key-epoch", help="fingerprint (default: the registered epoch)")
        parser.add_argument("--policy", action="append", default=[], metavar="NAME:VERSION")
        parser.add_argument("--min-banks", type=int, default=MIN_BANKS_FLOOR)
        parser.add_argument("--rule", default="2/3", help="share of active members that approve")
        parser.add_argument("--k-min", type=int, default=DEFAULT_RULE.k_min)
        parser.add_argument("--dp-required", action="store_true", help="privacy floor: DP on")
        parser.add_argument("--epsilon-ceiling", type=float, help="privacy floor: largest ε")
        parser.add_argument("--out", required=True, help="where to write the draft (JSON)")
        parser.add_argument("--propose", action="store_true", help="store it on the portal")

    def handle(self, *args: Any, **options: Any) -> None:
        draft = self._draft(options)
        out = Path(options["out"])
        try:
            out.write_text(json.dumps(draft.to_dict(), indent=2, sort_keys=True) + "\n")
        except OSError as exc:
            raise CommandError(f"{out}: cannot write the draft: {exc.strerror}") from None
        self.stdout.write(describe(draft.change, None))
        self.stdout.write(f"draft genesis written to {out}")
        if options["propose"]:
            with refusals(f"{out}: genesis not proposed"):
                roster_genesis_propose(
                    version_json=draft.to_dict(), actor=cli_actor("genesis_draft")
                )
            self.stdout.write("proposed on the portal: each founder now signs it")

    def _draft(self, options: dict[str, Any]) -> RosterVersion:
        members = [founder_member(spec) for spec in options["bank"]]
        try:
            return genesis_draft(
                options["consortium_id"],
                members,
                key_epochs=[options["key_epoch"] or current_epoch()],
                created_at=timezone.now().replace(microsecond=0).isoformat(),
                policies=[policy_approval(spec) for spec in options["policy"]],
                min_banks=options["min_banks"],
                rule=approval_rule(options["rule"], options["k_min"]),
                privacy=PrivacyFloor(options["dp_required"], options["epsilon_ceiling"]),
            )
        except RosterError as exc:
            raise CommandError(f"genesis not drafted: {exc}") from None

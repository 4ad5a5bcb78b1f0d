"""`bank-node models list|show|promote|rollback` and `bank-node cases export`.

Exit codes: 0 done; 1 a promotion the promotion policy refuses (``--force`` overrides);
2 a bad version, config or file (``bank_node.cli.main`` prints the message).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bank_node.cases import export_cases
from bank_node.config import ConfigError, NodeConfig, load_config
from bank_node.passport import Passport
from bank_node.portal_client import BankClient
from bank_node.registry import ModelRegistry, PromotionRefused
from bank_node.registry_node import NodeRegistry
from bank_node.registry_pin import current_user

COLUMNS = ("version", "round", "promoted", "local AUPRC", "consortium AUPRC", "held")


def _registry(args: argparse.Namespace) -> tuple[NodeConfig, ModelRegistry]:
    config = load_config(Path(args.config))
    return config, ModelRegistry(config.state_dir, config.promotion_tolerance)


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _row(passport: Passport, promoted: str | None) -> tuple[str, ...]:
    return (
        passport.version,
        str(passport.round),
        "*" if passport.version == promoted else "",
        _figure(passport.local_auprc),
        _figure(passport.consortium_auprc),
        passport.held or "",
    )


def table(rows: list[tuple[str, ...]]) -> str:
    """Plain aligned columns, the header first."""
    everything = [COLUMNS, *rows]
    widths = [max(len(r[i]) for r in everything) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in everything]
    return "\n".join(line.rstrip() for line in lines)


def cmd_list(args: argparse.Namespace) -> int:
    _, registry = _registry(args)
    promoted = registry.promoted()
    print(table([_row(p, promoted) for p in registry.versions()]))
    pin = registry.pin()
    if pin is not None:
        print(
            f"\n{pin.describe()}: newer versions are held, not promoted automatically, "
            "until `bank-node models promote VERSION`"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    _, registry = _registry(args)
    passport = registry.passport(args.version).to_dict()
    passport["promoted"] = registry.promoted() == args.version
    pin = registry.pin()
    passport["pinned"] = None
    if pin is not None and pin.version == args.version:
        passport["pinned"] = {**pin.to_dict(), "text": pin.describe()}
    print(json.dumps(passport, indent=2, sort_keys=True))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    config, registry = _registry(args)
    try:
        passport = registry.promote(args.version, force=args.force, by=args.by)
    except PromotionRefused as exc:
        print(f"bank-node models promote: refused: {exc}", file=sys.stderr)
        return 1
    print(f"promoted {passport.version} (round {passport.round})")
    _report(config)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    config, registry = _registry(args)
    version = registry.rollback(by=args.by)
    print(
        f"rolled back: {version} is the promoted model again, pinned: newer versions are "
        "held until `bank-node models promote VERSION`"
    )
    _report(config)
    return 0


def _report(config: NodeConfig) -> None:
    """Tell the portal at once when the bank opted in; the running node repeats it anyway."""
    if not config.report_served_model:
        return
    try:
        client = BankClient(
            config.portal_url,
            config.credential,
            timeout=config.request_timeout_seconds,
            max_retries=1,
            client_cert=config.client_cert,
        )
    except ConfigError as exc:  # the promotion stands; the running node reports it later
        print(f"warning: served model not reported to the portal: {exc}", file=sys.stderr)
        return
    NodeRegistry(config, client).report()


def cmd_cases_export(args: argparse.Namespace) -> int:
    config, registry = _registry(args)
    summary = export_cases(
        registry,
        bank=config.bank,
        scored=Path(args.scored),
        out=Path(args.out),
        version=args.version,
        transactions=Path(args.input) if args.input else None,
    )
    print(json.dumps(summary))
    return 0


def _with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", required=True, help="node configuration (TOML)")
    return parser


def _with_by(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--by",
        default=current_user(),
        help="who decided, for the history and the pin (default: the login name)",
    )
    return parser


def add_parser(sub: argparse._SubParsersAction) -> None:
    """``models`` and ``cases``: one call from ``bank_node.cli.parser``."""
    models = sub.add_parser("models", help="the model registry: list, show, promote, roll back")
    verbs = models.add_subparsers(dest="verb", required=True)
    _with_config(verbs.add_parser("list", help="every stored version")).set_defaults(func=cmd_list)
    show = _with_config(verbs.add_parser("show", help="one version's passport (JSON)"))
    show.add_argument("version")
    show.set_defaults(func=cmd_show)
    promote = _with_by(
        _with_config(
            verbs.add_parser("promote", help="serve VERSION from now on (lifts a rollback pin)")
        )
    )
    promote.add_argument("version")
    promote.add_argument(
        "--force",
        action="store_true",
        help="promote even a version the promotion policy refuses (its local AUPRC fell "
        "more than promotion_tolerance, or this bank's gate did not adopt it)",
    )
    promote.set_defaults(func=cmd_promote)
    rollback = verbs.add_parser(
        "rollback",
        help="serve the previously promoted version again, pinned until the next promote",
    )
    _with_by(_with_config(rollback)).set_defaults(func=cmd_rollback)

    cases = sub.add_parser("cases", help="alerts with their model passport, for a SAR")
    case_verbs = cases.add_subparsers(dest="verb", required=True)
    export = _with_config(case_verbs.add_parser("export", help="export a scored file's alerts"))
    export.add_argument(
        "--from", dest="scored", required=True, help="the CSV or Parquet file `score` wrote"
    )
    export.add_argument("--out", required=True, help="cases.json or cases.csv")
    export.add_argument(
        "--version",
        help="the model version that scored the file (default: the one its model_version "
        "column names; for a file without that column, the promoted one)",
    )
    export.add_argument(
        "--input",
        metavar="TRANSACTIONS.csv",
        help="the transactions file that was scored: each alert then carries its row",
    )
    export.set_defaults(func=cmd_cases_export)

"""A directory of the consortium's own transaction files: one CSV per bank, manifest optional.

The generator writes ``bank_<id>.csv`` files and a ``manifest.json`` that names them and
their typologies. A consortium bringing its own data has only the CSV files (any format
`bank_node.data` reads: IBM AML, PaySim, ULB creditcard, recognised from the header),
perhaps without a ``Typology`` column: then per-typology figures are skipped, with a note.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

TYPOLOGY_COLUMN = "Typology"


class DataDirError(ValueError):
    """A data directory the demo or the benchmark cannot use; says what to change."""


@dataclass(frozen=True)
class BankFile:
    """One bank's file: its id in tables, its slug at the portal, its path."""

    bank_id: str
    slug: str
    path: Path


def slug_of(path: Path) -> str:
    """The portal slug of a bank file: its name without suffix, lower case, hyphens."""
    return re.sub(r"[^a-z0-9]+", "-", path.stem.lower()).strip("-")


def load_manifest(directory: Path) -> dict[str, Any] | None:
    """The generator's manifest when the directory has one, else None."""
    path = directory / "manifest.json"
    return dict(json.loads(path.read_text())) if path.exists() else None


def bank_files(directory: Path) -> list[BankFile]:
    """The banks of a data directory: the manifest's files, else every ``*.csv`` in it."""
    if not directory.is_dir():
        raise DataDirError(f"{directory} is not a directory")
    manifest = load_manifest(directory)
    if manifest is not None:
        pairs = [(bank_id, directory / info["file"]) for bank_id, info in manifest["banks"].items()]
    else:
        pairs = [(path.stem, path) for path in sorted(directory.glob("*.csv"))]
    if not pairs:
        raise DataDirError(
            f"{directory} holds no *.csv file: put one transaction file per bank there "
            "(IBM AML, PaySim or ULB creditcard columns, see DATA.md)"
        )
    files = [BankFile(bank_id, slug_of(path), path) for bank_id, path in pairs]
    _check_slugs(directory, files)
    return files


def _check_slugs(directory: Path, files: list[BankFile]) -> None:
    seen: dict[str, Path] = {}
    for bank in files:
        if not bank.slug:
            raise DataDirError(f"{bank.path}: rename it; its name gives no bank slug")
        if bank.slug in seen:
            raise DataDirError(
                f"{seen[bank.slug].name} and {bank.path.name} in {directory} give the same bank "
                f"slug {bank.slug!r}: rename one of them"
            )
        seen[bank.slug] = bank.path


def has_column(path: Path, name: str) -> bool:
    """Whether the CSV's header line names ``name``."""
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        return name in [field.strip() for field in next(csv.reader(handle), [])]


def inside(path: Path, directory: Path) -> bool:
    """Whether ``path`` is ``directory`` or lies under it."""
    path, directory = path.resolve(), directory.resolve()
    return path == directory or directory in path.parents


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """``--data-dir``, ``--train-before``, ``--evaluate-from`` (the demo and quality.py)."""
    p.add_argument(
        "--data-dir",
        default=None,
        help="the banks' own files, one CSV per bank (IBM AML, PaySim or ULB creditcard, see "
        "DATA.md), instead of a generated world; a manifest.json and a Typology column are "
        "optional",
    )
    p.add_argument(
        "--train-before",
        type=date.fromisoformat,
        default=None,
        help="YYYY-MM-DD: train on rows before it (the nodes' [evaluation] train_before); "
        "default: the 60/20/20 split of each file's time span",
    )
    p.add_argument(
        "--evaluate-from",
        type=date.fromisoformat,
        default=None,
        help="YYYY-MM-DD: test on rows from it on ([evaluation] evaluate_from; default: "
        "--train-before)",
    )


def check_data_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse an evaluation split the nodes would refuse (argparse exits with the message)."""
    if args.evaluate_from is not None and args.train_before is None:
        p.error("--evaluate-from needs --train-before")
    if args.evaluate_from is not None and args.evaluate_from < args.train_before:
        p.error("--evaluate-from must be on or after --train-before")


def evaluation_table(train_before: date | None, evaluate_from: date | None) -> str:
    """The node.toml ``[evaluation]`` table for a date split ("" for the default split)."""
    if train_before is None:
        return ""
    start = evaluate_from or train_before
    return f'\n[evaluation]\ntrain_before = "{train_before}"\nevaluate_from = "{start}"\n'


def typology_manifest(
    files: list[BankFile], manifest: dict[str, Any] | None
) -> tuple[dict[str, Any], list[str]]:
    """What `comparison_report` reads about typologies, and a note when there is nothing.

    A generated world's manifest when every file has its ``Typology`` column; otherwise
    one with no typologies, so the per-typology rows and targets are left out.
    """
    untyped = [f.path.name for f in files if not has_column(f.path, TYPOLOGY_COLUMN)]
    if manifest is not None and not untyped:
        return manifest, []
    why = (f"no {TYPOLOGY_COLUMN} column in {', '.join(untyped)}" if untyped
           else "no manifest.json naming the typologies")  # fmt: skip
    plain = {"banks": {f.bank_id: {} for f in files}, "typologies": [], "train_banks": {},
             "holdout": {}}  # fmt: skip
    return plain, [f"per-typology figures skipped: {why}"]

"""Case export: a scored file's alerts with their model passport, for a suspicious-activity report.

``bank-node cases export --from SCORED.csv|SCORED.parquet --out cases.json|cases.csv``
reads what ``bank-node score`` wrote (``line``, ``score``, ``alert`` and, when present,
``model_version`` and ``reasons``) and writes one case per alert with the passport of the
model version that scored it (the one its ``model_version`` column names)
(docs/model-registry.md, "Case export", lists every field). Reasons are taken as
``score`` wrote them; this module computes no attribution.
"""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bank_node.config import ConfigError
from bank_node.passport import Passport
from bank_node.registry import ModelRegistry
from bank_node.score_output import read_scored

SCORED_COLUMNS = ("line", "score", "alert")
FORMATS = (".json", ".csv")
# The passport's fields every case row carries in the CSV export, in this order.
PASSPORT_COLUMNS = (
    "model_version",
    "model_round",
    "policy_name",
    "policy_version",
    "policy_digest",
    "key_epoch",
    "epsilon",
    "aggregate_digest",
    "input_digests",
    "feature_set",
    "local_auprc",
    "consortium_auprc",
)


def export_cases(
    registry: ModelRegistry,
    *,
    bank: str,
    scored: Path,
    out: Path,
    version: str | None,
    transactions: Path | None,
) -> dict[str, Any]:
    """Write the cases of ``scored`` to ``out`` (JSON or CSV by its suffix); a summary."""
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"--out {out}: write cases.json or cases.csv (the suffix picks)")
    alerts, scored_by = _alerts(scored)
    passport = registry.passport(_version(registry, scored, scored_by, version))
    cases = [_case(scored, number, row, passport) for number, row in alerts]
    if transactions is not None:
        _attach_transactions(cases, transactions)
    header = {
        "bank": bank,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "scored_file": str(scored),
        "scored_sha256": hashlib.sha256(scored.read_bytes()).hexdigest(),
    }
    if out.suffix.lower() == ".json":
        document = {**header, "model": passport.to_dict(), "cases": cases}
        out.write_text(json.dumps(document, indent=2))
    else:
        _write_csv(out, header, passport, cases)
    return {"cases": len(cases), "model_version": passport.version, "out": str(out)}


def _version(
    registry: ModelRegistry, scored: Path, scored_by: set[str] | None, version: str | None
) -> str:
    """The version whose passport the cases carry: the one the file names in its rows.

    A file written before ``score`` named its model (no ``model_version`` column) takes
    ``--version``, else the promoted version, as it always has.
    """
    if not scored_by:  # no column, or no rows
        name = version or registry.promoted()
        if name is None:
            raise ConfigError("no model version is promoted; name the one that scored: --version")
        return name
    if len(scored_by) > 1:
        raise ConfigError(
            f"{scored} was scored by more than one model version ({', '.join(sorted(scored_by))})"
            ": export the cases of each scoring run's file separately"
        )
    (name,) = scored_by
    if version is not None and version != name:
        raise ConfigError(
            f"--version {version}, but {scored} was scored by {name} (its model_version column)"
        )
    return name


def _alerts(scored: Path) -> tuple[list[tuple[int, dict[str, str]]], set[str] | None]:
    """The alert rows of a scored file with their row numbers, and the versions named in it.

    The versions are None for a file without a ``model_version`` column. A ConfigError
    names a missing column.
    """
    columns, rows = read_scored(scored)
    missing = [c for c in SCORED_COLUMNS if c not in columns]
    if missing:
        raise ConfigError(
            f"{scored}: not a file written by `bank-node score`: no column {', '.join(missing)}"
        )
    named = "model_version" in columns
    alerts: list[tuple[int, dict[str, str]]] = []
    versions: set[str] = set()
    for number, row in enumerate(rows, start=2):
        if named:
            versions.add(row["model_version"].strip())
        if row["alert"].strip() == "1":
            alerts.append((number, row))
    return alerts, versions if named else None


def _case(scored: Path, number: int, row: dict[str, str], passport: Passport) -> dict[str, Any]:
    try:
        line, score = int(row["line"]), float(row["score"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{scored}, line {number}: line and score must be numbers") from exc
    return {
        "case_id": f"{passport.version}-line-{line}",
        "line": line,
        "score": score,
        "threshold": passport.threshold,
        "model_version": passport.version,
        "reasons": (row.get("reasons") or "").strip(),
    }


def _attach_transactions(cases: list[dict[str, Any]], transactions: Path) -> None:
    """Each case's own row of the scored transactions file (``line`` counts its header)."""
    wanted = {case["line"] for case in cases}
    rows: dict[int, dict[str, str]] = {}
    try:
        with open(transactions, newline="") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                if number in wanted:
                    rows[number] = dict(row)
    except OSError as exc:
        raise ConfigError(f"--input {transactions}: cannot read: {exc.strerror}") from exc
    absent = sorted(wanted - set(rows))
    if absent:
        raise ConfigError(
            f"--input {transactions} has no line {absent[0]}: not the file that was scored"
        )
    for case in cases:
        case["transaction"] = rows[case["line"]]


def passport_columns(passport: Passport) -> dict[str, Any]:
    """The passport flattened into the CSV export's columns."""
    digests = ";".join(f"{bank}:{d}" for bank, d in sorted(passport.input_digests.items()))
    return dict(
        zip(
            PASSPORT_COLUMNS,
            (
                passport.version,
                passport.round,
                passport.policy.name,
                passport.policy.version,
                passport.policy.digest,
                passport.key_epoch,
                "" if passport.epsilon is None else passport.epsilon,
                passport.aggregate_digest,
                digests,
                passport.feature_set,
                "" if passport.local_auprc is None else passport.local_auprc,
                "" if passport.consortium_auprc is None else passport.consortium_auprc,
            ),
            strict=True,
        )
    )


def _write_csv(
    out: Path, header: dict[str, Any], passport: Passport, cases: list[dict[str, Any]]
) -> None:
    """One row per case: the case, its transaction's fields (``tx_*``), the passport."""
    tx_fields: list[str] = []
    for case in cases:
        tx_fields += [f for f in case.get("transaction", {}) if f not in tx_fields]
    base = ["case_id", "bank", "line", "score", "threshold", "reasons"]
    columns = base + [f"tx_{f}" for f in tx_fields] + list(PASSPORT_COLUMNS) + ["scored_sha256"]
    model = passport_columns(passport)
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for case in cases:
            tx = {f"tx_{k}": v for k, v in case.get("transaction", {}).items()}
            fields = {k: case[k] for k in base if k in case} | {"bank": header["bank"]}
            writer.writerow({**fields, **tx, **model, "scored_sha256": header["scored_sha256"]})

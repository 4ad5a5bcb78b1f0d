"""Case export: a scored file's alerts with their model passport, for a suspicious-activity report.

``bank-node cases export --from SCORED.csv --out cases.json|cases.csv`` reads what
``bank-node score`` wrote (``line``, ``score``, ``alert`` and, when present, ``reasons``)
and writes one case per alert with the passport of the model version that scored it
(docs/model-registry.md, "Case export", lists every field). Reasons are taken as
``score`` wrote them; this module computes no attribution.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bank_node.config import ConfigError
from bank_node.passport import Passport
from bank_node.registry import ModelRegistry

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
    name = version or registry.promoted()
    if name is None:
        raise ConfigError("no model version is promoted; name the one that scored: --version")
    passport = registry.passport(name)
    cases = list(_alerts(scored, passport))
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


def _alerts(scored: Path, passport: Passport) -> Iterator[dict[str, Any]]:
    """The alert rows of a scored CSV, checked; ConfigError names the line and column."""
    try:
        handle = open(scored, newline="")
    except OSError as exc:
        raise ConfigError(f"--from {scored}: cannot read: {exc.strerror}") from exc
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in SCORED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(
                f"{scored}: not a file written by `bank-node score`: no column {', '.join(missing)}"
            )
        for number, row in enumerate(reader, start=2):
            if row["alert"].strip() != "1":
                continue
            yield _case(scored, number, row, passport)


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

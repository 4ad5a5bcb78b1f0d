"""Render the report dict as JSON (for machines, signed), CSV (one table) or PDF (people).

Each renderer is deterministic: one snapshot gives the same bytes every time, so the
files of an evidence pack and the same formats exported one by one are identical.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from audit.chain import canonical, encode_report

FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}
# The evidence pack: the three formats and their signed manifest (audit.pack).
PACK = "zip"
EXPORT_FORMATS = {**FORMATS, PACK: "application/zip"}


def check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")


def render(report: dict[str, Any], fmt: str) -> tuple[bytes, str]:
    """One format of the report (the pack is built by ``audit.services``, which signs it)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    renderer = {"json": encode_report, "csv": report_csv, "pdf": report_pdf}[fmt]
    return renderer(report), FORMATS[fmt]


def evidence_files(report: dict[str, Any]) -> dict[str, bytes]:
    """The pack's files, named as ``audit.pack.FILES`` lists them."""
    return {f"report.{fmt}": render(report, fmt)[0] for fmt in FORMATS}


# --- CSV --------------------------------------------------------------------------------

CSV_COLUMNS = (
    "record",
    "round",
    "seq",
    "at",
    "actor",
    "action",
    "bank",
    "digest",
    "status",
    "in_manifest",
    "detail",
    "prev_hash",
    "hash",
)


def _cell(value: Any) -> Any:
    """Keep spreadsheet programs from running a text cell as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "@", "\t", "\r"):
        return "'" + value
    if isinstance(value, str) and value.startswith("-"):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def _csv_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    verification, head, signature = (
        report["verification"],
        report["signed_head"],
        report["signature"],
    )
    rows: list[dict[str, Any]] = [
        {
            "record": "report",
            "at": report["generated_at"],
            "actor": report["generated_by"],
            "detail": f"{report['consortium']}; selection {json.dumps(report['selection'])}",
            "hash": signature["body_sha256"],
            "status": "signed",
        },
        {
            "record": "verification",
            "seq": verification["first_bad_seq"],
            "status": "intact" if verification["ok"] else f"FAILED ({verification['problem']})",
            "detail": f"{verification['events']} events; {verification['reason']}",
            "hash": verification["head_hash"],
        },
        {
            "record": "signed_head",
            "seq": head["seq"],
            "at": head["signed_at"],
            "detail": f"signature {head['signature']} by {head['public_key']}",
            "hash": head["head_hash"],
        },
    ]
    for rnd in report["rounds"]:
        rows.extend(_round_rows(rnd))
    rows.extend(_roster_rows(report.get("roster")))
    for epoch in report["key_epochs"]:
        rows.append(
            {
                "record": "key_epoch",
                "seq": epoch["number"],
                "at": epoch["created_at"],
                "actor": epoch["created_by"],
                "digest": epoch["fingerprint"],
                "status": "active" if epoch["active"] else "retired",
                "detail": json.dumps(epoch["ckks_params"], sort_keys=True),
            }
        )
    for cp in report["checkpoints"]:
        rows.append(
            {
                "record": "checkpoint",
                "seq": cp["seq"],
                "at": cp["signed_at"],
                "detail": f"{cp['reason']}; signature {cp['signature']}",
                "hash": cp["head_hash"],
            }
        )
    for event in report["events"]:
        rows.append(
            {
                "record": "event",
                "round": event["data"].get("round") if isinstance(event["data"], dict) else None,
                "seq": event["seq"],
                "at": event["created_at"],
                "actor": event["actor"],
                "action": event["action"],
                "detail": canonical(event["data"]).decode(),
                "prev_hash": event["prev_hash"],
                "hash": event["hash"],
            }
        )
    return rows


def _round_rows(rnd: dict[str, Any]) -> list[dict[str, Any]]:
    privacy = rnd["privacy"]
    n = rnd["number"]
    rows: list[dict[str, Any]] = [
        {
            "record": "round",
            "round": n,
            "at": rnd["opened_at"],
            "status": rnd["state"],
            "digest": rnd["aggregate_digest"],
            "detail": (
                f"{rnd['kind']}; policy {rnd['policy']['name']} v{rnd['policy']['version']}; "
                f"min_banks {privacy['min_banks']}; differential privacy "
                f"{privacy['differential_privacy']}; key epoch {rnd['key_epoch']['number']}; "
                f"participants {len(rnd['participants'])}"
            ),
        }
    ]
    for sub in rnd["submissions"]:
        rows.append(
            {
                "record": "submission",
                "round": n,
                "at": sub["received_at"],
                "bank": sub["bank"],
                "digest": sub["digest"],
                "status": "signature valid" if sub["signature_valid"] else "SIGNATURE INVALID",
                "in_manifest": "yes" if sub["in_manifest"] else "no",
                "detail": (
                    f"{sub['size_bytes']} bytes; in trail: {sub['recorded_in_trail']}; "
                    f"epsilon spent: {sub.get('epsilon_spent')}"
                ),
            }
        )
    for rej in rnd["rejections"]:
        rows.append(
            {
                "record": "rejection",
                "round": n,
                "seq": rej["seq"],
                "at": rej["at"],
                "bank": rej["bank"],
                "detail": rej["reason"],
            }
        )
    if rnd["failure_reason"]:
        rows.append(
            {
                "record": "failure",
                "round": n,
                "at": rnd["closed_at"],
                "detail": rnd["failure_reason"],
            }
        )
    for m in rnd["metrics"]:
        rows.append(
            {
                "record": "metrics",
                "round": n,
                "bank": m["bank"],
                "detail": json.dumps(m["metrics"], sort_keys=True),
                "status": "self-reported",
            }
        )
    for bank, eps in privacy["epsilon_spent"].items():
        rows.append({"record": "epsilon", "round": n, "bank": bank, "detail": eps})
    return rows


def _roster_version_row(entry: dict[str, Any]) -> dict[str, Any]:
    signers = ", ".join(sorted(entry["version"]["signatures"])) or "nobody"
    return {
        "record": "roster_version",
        "seq": entry["number"],
        "at": entry["in_force_at"] or entry["proposed_at"],
        "actor": entry["proposed_by"],
        "action": entry["kind"],
        "status": entry["status"],
        "detail": (
            f"{entry['summary']}; signed by {signers}; "
            f"signed version {canonical(entry['version']).decode()}"
        ),
        "prev_hash": entry["previous_hash"],
        "hash": entry["version_hash"],
    }


def _roster_rows(roster: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The roster history: versions in force, proposals, objections, then the disputes."""
    if roster is None:  # a report from before the roster
        return []
    rows = [_roster_version_row(v) for v in roster["versions"] + roster["proposals"]]
    for objection in roster["objections"]:
        rows.append(
            {
                "record": "objection",
                "round": objection["round"],
                "seq": objection["roster_version"],
                "at": objection["received_at"],
                "bank": objection["bank"],
                "action": objection["reason_code"],
                "status": "signed",
                "detail": (
                    f"{objection['message']}; signature {objection['signature']}; "
                    f"signed body {canonical(objection['body']).decode()}"
                ),
            }
        )
    rows += [_dispute_row(d) for d in roster.get("disputes", [])]
    rows += [_gate_row(g) for g in roster.get("gates", [])]
    rows += [_verdict_row(v) for v in roster.get("verdicts", [])]
    return rows


def _gate_row(gate: dict[str, Any]) -> dict[str, Any]:
    """An evaluation round's decision on its candidate, from the verified verdicts."""
    signers = ", ".join(f"{b} {d}" for b, d in sorted(gate["verdicts"].items())) or "nobody"
    return {
        "record": "gate",
        "round": gate["round"],
        "action": gate["decision"] or "undecided",
        "digest": gate["aggregate_digest"],
        "status": "signed",
        "detail": (
            f"candidate round {gate['candidate_round']}; threshold {gate['threshold']}; "
            f"verified verdicts: {signers}"
        ),
    }


def _verdict_row(entry: dict[str, Any]) -> dict[str, Any]:
    """One bank's signed verdict, as stored (the verifier re-checks its signature)."""
    verdict = entry["verdict"] if isinstance(entry["verdict"], dict) else {}
    return {
        "record": "verdict",
        "round": entry["round"],
        "at": entry["received_at"],
        "bank": entry["bank"],
        "action": verdict.get("decision"),
        "digest": verdict.get("aggregate_digest"),
        "status": "signed",
        "detail": f"signature {entry['signature']}; signed body {canonical(verdict).decode()}",
    }


def _dispute_row(dispute: dict[str, Any]) -> dict[str, Any]:
    """A round the banks' signed objections dispute, and who signed its clearance."""
    return {
        "record": "dispute",
        "round": dispute["round"],
        "action": "disputed" if dispute["disputed"] else "cleared",
        "status": "signed",
        "detail": (
            f"objected to by {', '.join(dispute['objectors'])} "
            f"(threshold {dispute['threshold']}); clearance signed by "
            f"{', '.join(dispute['clearers']) or 'nobody'}"
        ),
    }


def report_csv(report: dict[str, Any]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in _csv_rows(report):
        writer.writerow({k: _cell(row.get(k)) for k in CSV_COLUMNS})
    return out.getvalue().encode()


# --- PDF --------------------------------------------------------------------------------


def report_pdf(report: dict[str, Any]) -> bytes:
    from audit.pdf import build_pdf

    return build_pdf(report)

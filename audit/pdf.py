"""The audit report as a PDF for people, laid out with reportlab's platypus."""

from __future__ import annotations

import io
import json
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.platypus import (
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
)
from reportlab.platypus.flowables import Flowable

from audit.pdf_style import H1, H2, H3, SMALL, facts, grid, mono, para, when
from audit.pdf_summary import json_sha256, numbered_canvas, summary_page


def _verification(report: dict[str, Any]) -> list[Flowable]:
    check, head = report["verification"], report["signed_head"]
    if check["ok"]:
        verdict = (
            f"Chain intact: {check['events']} events and {check['checkpoints']} signed "
            "checkpoints verified in the portal's database at export time."
        )
    else:
        verdict = (
            f"CHAIN VERIFICATION FAILED at event #{check['first_bad_seq']} "
            f"({check['problem']}): {check['reason']}"
        )
    return [
        Paragraph("Verification", H2),
        para(verdict),
        Spacer(1, 2 * mm),
        facts(
            [
                ("Signed head", f"event #{head['seq']}, signed {when(head['signed_at'])}"),
                ("Head hash", mono(head["head_hash"])),
                ("Head signature", mono(head["signature"])),
                ("Portal public key", mono(report["portal_public_key"])),
                ("Report SHA-256", mono(report["signature"]["body_sha256"])),
                ("Report signature", mono(report["signature"]["value"])),
            ]
        ),
        Spacer(1, 2 * mm),
        para(
            "Anyone can re-check the JSON form of this report without the portal: "
            "python -m audit.verify report.json --public-key portal.pub",
            SMALL,
        ),
    ]


def _round_summary(report: dict[str, Any]) -> list[Flowable]:
    rows = [
        [
            str(r["number"]),
            r["kind"],
            r["state"],
            f"{r['policy']['name']} v{r['policy']['version']}",
            str(len(r["participants"])),
            f"{sum(s['signature_valid'] for s in r['submissions'])} of {len(r['submissions'])}",
            str(len(r["rejections"])),
            r["privacy"]["differential_privacy"],
        ]
        for r in report["rounds"]
    ]
    header = ["Round", "Kind", "State", "Policy", "Banks", "Valid signatures", "Rejected", "DP"]
    widths = [w * mm for w in (13, 20, 20, 30, 13, 27, 17, 12)]
    return [Paragraph("Rounds", H2), grid(header, rows, widths)]


def _privacy_text(privacy: dict[str, Any]) -> str:
    """DP-SGD's settings in a DP training round, else what the round releases, in words."""
    release = privacy.get("release")
    if privacy["differential_privacy"] == "off":
        return f"differential privacy off: {release}" if release else "differential privacy off"
    # A multiplier left empty is derived by each bank from the target: say so, not "None".
    settings = {k: v for k, v in privacy["dp_settings"].items() if v is not None}
    parts = [f"{k.removeprefix('dp_').replace('_', ' ')} = {v}" for k, v in settings.items()]
    if "dp_noise_multiplier" not in settings:
        parts.append("noise multiplier derived by each bank from the target")
    return "differential privacy ON (DP-SGD at each bank): " + ", ".join(parts)


def _json_without(metrics: Any, key: str) -> str:
    kept = {k: v for k, v in metrics.items() if k != key} if isinstance(metrics, dict) else metrics
    return json.dumps(kept, sort_keys=True)


def _epsilon(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def _round_detail(rnd: dict[str, Any]) -> list[Flowable]:
    privacy = rnd["privacy"]
    rows_of_facts = [
        ("State", rnd["state"] + (f": {rnd['failure_reason']}" if rnd["failure_reason"] else "")),
        ("Opened / closed", f"{when(rnd['opened_at'])} / {when(rnd['closed_at'])}"),
        ("Policy", f"{rnd['policy']['name']} version {rnd['policy']['version']}"),
        ("Key epoch", mono(f"{rnd['key_epoch']['number']}: {rnd['key_epoch']['fingerprint']}")),
        ("Base round", rnd["base_round"] or "initial weights"),
        ("Minimum banks", privacy["min_banks"]),
        ("CKKS parameters", json.dumps(privacy["ckks_params"], sort_keys=True)),
        ("Privacy", _privacy_text(privacy)),
        ("Participants", ", ".join(rnd["participants"]) or "none"),
    ]
    if privacy["epsilon_spent"]:
        spent = ", ".join(f"{b}: {_epsilon(e)}" for b, e in privacy["epsilon_spent"].items())
        budget = privacy.get("epsilon_budget")
        spent += f" (budget {budget:g} per bank)" if isinstance(budget, int | float) else ""
        rows_of_facts.append(
            ("Epsilon spent (cumulative, signed by each bank with its upload)", spent)
        )
    if rnd["aggregate_digest"]:
        rows_of_facts.append(("Aggregate digest", mono(rnd["aggregate_digest"])))
    parts: list[Flowable] = [Paragraph(f"Round {rnd['number']}", H3), facts(rows_of_facts)]
    if rnd["submissions"]:
        rows = [
            [
                s["bank"],
                mono(s["digest"]),
                "valid" if s["signature_valid"] else "INVALID",
                "yes" if s["in_manifest"] else "no",
                _epsilon(s.get("epsilon_spent")),
            ]
            for s in rnd["submissions"]
        ]
        header = ["Bank", "Submission digest (SHA-256)", "Signature", "In aggregate", "Epsilon"]
        parts += [
            Spacer(1, 2 * mm),
            grid(header, rows, [w * mm for w in (24, 94, 16, 18, 16)]),
        ]
    if rnd["rejections"]:
        rows = [[str(j["seq"]), j["bank"], when(j["at"]), j["reason"]] for j in rnd["rejections"]]
        parts += [
            Spacer(1, 2 * mm),
            para("Rejected submissions", SMALL),
            grid(["Event", "Bank", "At", "Reason"], rows, [w * mm for w in (14, 26, 36, 88)]),
        ]
    if rnd["metrics"]:
        # A reported epsilon is the bank's word a round late; the signed one is above.
        rows = [[m["bank"], _json_without(m["metrics"], "epsilon")] for m in rnd["metrics"]]
        parts += [
            Spacer(1, 2 * mm),
            para("Metrics the banks reported (self-reported)", SMALL),
            grid(["Bank", "Metrics"], rows, [28 * mm, 136 * mm]),
        ]
    return parts


def _signers(entry: dict[str, Any]) -> str:
    return ", ".join(sorted(entry["version"]["signatures"])) or "nobody"


def _roster(roster: dict[str, Any] | None) -> list[Flowable]:
    """The banks' signed roster: every version in force, proposals, and objections."""
    if roster is None or not (roster["versions"] or roster["proposals"]):
        return []
    rows = [
        [
            str(v["number"]),
            when(v["in_force_at"]) if v["status"] == "in_force" else v["status"],
            v["summary"],
            _signers(v),
            mono(f"{v['version_hash']} after {v['previous_hash'][:16]}..."),
        ]
        for v in roster["versions"] + roster["proposals"]
    ]
    header = ["Version", "In force", "Change (plain words)", "Signed by", "Version hash"]
    parts: list[Flowable] = [
        Paragraph("Roster: the banks' signed charter and its changes", H2),
        para(
            f"Consortium {roster['consortium_id'] or '-'}. Each version is hash-chained to "
            "the one before it and in force only with the banks' own signatures; the full "
            "signed versions are in the JSON report, which python -m audit.verify re-checks.",
            SMALL,
        ),
        grid(header, rows, [w * mm for w in (14, 30, 66, 24, 40)]),
    ]
    if roster["objections"]:
        rows = [
            [when(o["received_at"]), o["bank"], str(o["round"]), o["reason_code"], o["message"]]
            for o in roster["objections"]
        ]
        parts += [
            Paragraph("Objections: rounds the banks' nodes refused (signed)", H3),
            grid(
                ["Received", "Bank", "Round", "Reason", "Message"],
                rows,
                [w * mm for w in (30, 22, 12, 28, 82)],
            ),
        ]
    return parts + _disputes(roster.get("disputes", [])) + _gates(roster.get("gates", []))


def _disputes(disputes: list[dict[str, Any]]) -> list[Flowable]:
    """Rounds enough banks objected to: never built on unless as many signed a clearance."""
    if not disputes:
        return []
    rows = [
        [
            str(d["round"]),
            "disputed" if d["disputed"] else "cleared",
            f"{', '.join(d['objectors'])} (threshold {d['threshold']})",
            ", ".join(d["clearers"]) or "-",
        ]
        for d in disputes
    ]
    return [
        Paragraph("Disputed rounds: objected to by the roster's number of banks", H3),
        grid(
            ["Round", "State", "Objected to by", "Clearance signed by"],
            rows,
            [w * mm for w in (14, 22, 82, 56)],
        ),
    ]


def _gates(gates: list[dict[str, Any]]) -> list[Flowable]:
    """Evaluation gates: a candidate is a base only if the banks' verdicts adopted it."""
    if not gates:
        return []
    rows = [
        [
            str(g["round"]),
            str(g["candidate_round"]),
            g["decision"] or "undecided",
            ", ".join(f"{b}: {d}" for b, d in sorted(g["verdicts"].items())) or "-",
        ]
        for g in gates
    ]
    return [
        Paragraph("Evaluation gate: decisions from the banks' signed verdicts", H3),
        grid(
            ["Round", "Candidate", "Decision", "Verified verdicts"],
            rows,
            [w * mm for w in (14, 20, 22, 118)],
        ),
    ]


def _tables(report: dict[str, Any]) -> list[Flowable]:
    parts: list[Flowable] = []
    if report["key_epochs"]:
        rows = [
            [str(e["number"]), mono(e["fingerprint"]), when(e["created_at"]), e["created_by"]]
            for e in report["key_epochs"]
        ]
        header = ["Epoch", "Public context fingerprint", "Registered", "By"]
        parts += [
            Paragraph("Key epochs", H2),
            grid(header, rows, [w * mm for w in (14, 94, 36, 26)]),
        ]
    if report["banks"]:
        rows = [[b["slug"], b["name"], b["status"]] for b in report["banks"]]
        parts += [
            Paragraph("Banks", H2),
            grid(["Bank", "Name", "Status now"], rows, [w * mm for w in (40, 90, 30)]),
        ]
    rows = [
        [str(c["seq"]), when(c["signed_at"]), c["reason"], mono(c["head_hash"])]
        for c in report["checkpoints"]
    ]
    parts += [
        Paragraph("Signed checkpoints", H2),
        grid(["Head", "Signed", "Why", "Head hash"], rows, [w * mm for w in (12, 33, 33, 94)]),
    ]
    rows = [
        [str(e["seq"]), when(e["created_at"]), e["actor"], e["action"], mono(e["hash"][:16])]
        for e in report["events"]
    ]
    chain = report["chain"]
    span = (
        f"Events #{chain['first_seq']} to #{chain['last_seq']} ({chain['events']}); "
        "full data and hashes are in the JSON report."
        if report["events"]
        else "No events in this range."
    )
    parts += [
        Paragraph("Events", H2),
        para(span, SMALL),
        grid(
            ["#", "At", "Actor", "Action", "Hash (start)"],
            rows,
            [w * mm for w in (14, 36, 40, 48, 32)],
        ),
    ]
    return parts


def build_pdf(report: dict[str, Any]) -> bytes:
    """A4 pages: a summary in words first; every page names the snapshot and JSON digest."""
    selection = report["selection"]
    if selection["rounds"] is not None:
        chosen = "rounds " + ", ".join(map(str, selection["rounds"]))
    elif selection["since"] or selection["until"]:
        chosen = f"from {when(selection['since'])} until {when(selection['until'])}"
    else:
        chosen = "the whole trail"
    story: list[Flowable] = [
        *summary_page(report),
        Paragraph(f"Audit report: {escape(report['consortium'])}", H1),
        facts(
            [
                ("Consortium", report["consortium"]),
                (
                    "Period",
                    f"{when(report['period']['from'])} to {when(report['period']['to'])}",
                ),
                ("Selection", chosen),
                ("Generated", f"{when(report['generated_at'])} by {report['generated_by']}"),
                ("JSON report SHA-256", mono(json_sha256(report))),
            ]
        ),
        *_verification(report),
        *_round_summary(report),
    ]
    for rnd in report["rounds"]:
        parts = _round_detail(rnd)
        story += [KeepTogether(parts[:2]), *parts[2:]]
    story += _roster(report.get("roster"))
    story += _tables(report)
    footer = (
        f"Consortium audit report, snapshot at event #{report['signed_head']['seq']}, "
        f"JSON SHA-256 {json_sha256(report)[:16]}..."
    )
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
        title=f"Audit report: {report['consortium']}",
        author=f"Consortium portal, exported by {report['generated_by']}",
        subject=(
            f"Audit trail of {report['consortium']}: snapshot at event "
            f"#{report['signed_head']['seq']}, JSON SHA-256 {json_sha256(report)}"
        ),
        creator="Consortium portal (audit.pdf)",
        invariant=True,  # the same snapshot renders to the same bytes
    )
    doc.build(story, canvasmaker=numbered_canvas(footer, report["generated_at"]))
    return out.getvalue()

"""The PDF's first page in plain words, and its pages numbered "page X of Y" with metadata.

A regulator reads the summary first: who took part, how many rounds ran and how they
ended, the privacy budget spent against the one agreed, the disputes, and which snapshot
and JSON file the PDF stands for. Every figure comes from the signed report itself.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import PageBreak, Paragraph, Spacer
from reportlab.platypus.flowables import Flowable

from audit.chain import encode_report

_STYLES = getSampleStyleSheet()
TEXT = ParagraphStyle("summary", parent=_STYLES["BodyText"], fontSize=10, leading=13.5)
HEAD = ParagraphStyle("summary-head", parent=_STYLES["Heading3"], spaceBefore=6)
SMALL = ParagraphStyle("summary-small", parent=TEXT, fontSize=8, leading=10)

Report = dict[str, Any]


def json_sha256(report: Report) -> str:
    """SHA-256 of the JSON file of this report (``report.json`` in the evidence pack)."""
    return hashlib.sha256(encode_report(report)).hexdigest()


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _who(report: Report) -> str:
    banks = report["banks"]
    taking_part = sorted({b for r in report["rounds"] for b in r["participants"]})
    names = ", ".join(f"{b['name']} ({b['slug']})" for b in banks) or "no bank"
    return (
        f"{report['consortium']}: {_plural(len(banks), 'member bank')} appear in this report "
        f"({names}); {_plural(len(taking_part), 'bank')} sent updates in the rounds it covers. "
        f"Snapshot taken by {report['generated_by']}."
    )


def _rounds(report: Report) -> str:
    rounds = report["rounds"]
    if not rounds:
        return "No rounds fall in this report's selection."
    states = Counter(r["state"] for r in rounds)
    kinds = Counter(r["kind"] for r in rounds)
    by_state = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    by_kind = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    numbers = f"{rounds[0]['number']} to {rounds[-1]['number']}"
    return f"{_plural(len(rounds), 'round')} (numbers {numbers}; {by_kind}): {by_state}."


def _outcome(report: Report) -> str:
    published = [r for r in report["rounds"] if r["state"] == "published"]
    failed = [r for r in report["rounds"] if r["state"] == "failed"]
    check = report["verification"]
    trail = (
        f"The audit trail verified intact ({check['events']} events) when this was exported."
        if check["ok"]
        else f"THE AUDIT TRAIL FAILED VERIFICATION: {check['reason']}"
    )
    if not published:
        text = "No round in this report produced a shared model."
    else:
        last = published[-1]
        text = (
            f"The last shared model is from round {last['number']}, combined from "
            f"{_plural(len(last['participants']), 'bank')}'s encrypted updates."
        )
    if failed:
        text += f" {_plural(len(failed), 'round')} failed, each with its reason below."
    return f"{text} {trail}"


def _privacy(report: Report) -> str:
    dp_rounds = [r for r in report["rounds"] if r["privacy"]["differential_privacy"] == "on"]
    if not dp_rounds:
        return "Differential privacy was not used in these rounds (no privacy budget applies)."
    budgets = {r["privacy"]["dp_settings"].get("dp_target_epsilon") for r in dp_rounds}
    budgets.discard(None)
    spent: dict[str, float] = {}
    for rnd in dp_rounds:  # the figure each bank signed with its upload, cumulative
        for sub in rnd["submissions"]:
            if isinstance(sub.get("epsilon_spent"), int | float):
                spent[sub["bank"]] = max(spent.get(sub["bank"], 0.0), sub["epsilon_spent"])
    budget = max(budgets) if budgets else None
    text = f"Differential privacy was on in {len(dp_rounds)} of {len(report['rounds'])} rounds"
    text += f", with a privacy budget of ε = {budget} per bank." if budget else "."
    if not spent:
        return text + " No bank signed an ε figure with its updates."
    bank, top = max(spent.items(), key=lambda item: item[1])
    text += f" The most any bank spent is ε = {top:.2f} ({bank}, as it signed at upload)"
    if budget:
        over = sorted(b for b, e in spent.items() if e > budget)
        text += f"; over budget: {', '.join(over)}." if over else "; every bank within budget."
    return text + "."


def _disputes(report: Report) -> str:
    roster = report.get("roster") or {}
    disputes, objections = roster.get("disputes", []), roster.get("objections", [])
    if not disputes:
        return f"No round is disputed ({_plural(len(objections), 'signed objection')} received)."
    parts = [
        f"round {d['round']} {'disputed' if d['disputed'] else 'cleared'} "
        f"(objected to by {', '.join(d['objectors'])})"
        for d in disputes
    ]
    return f"{_plural(len(disputes), 'disputed round')}: {'; '.join(parts)}."


def _evidence(report: Report) -> str:
    head = report["signed_head"]
    return (
        f"This PDF shows the snapshot of the trail at event #{head['seq']} (head hash "
        f"{head['head_hash']}), signed by the portal at {head['signed_at'][:19]} UTC. The "
        f"JSON form of the same report has SHA-256 {json_sha256(report)}; anyone can check "
        "it, or the whole evidence pack, offline with python -m audit.verify."
    )


def summary_page(report: Report) -> list[Flowable]:
    """The first page: a summary in words, then a page break before the details."""
    story: list[Flowable] = [
        Paragraph(f"Audit report: {escape(report['consortium'])}", _STYLES["Title"]),
        Paragraph("Summary", _STYLES["Heading2"]),
    ]
    sections = (
        ("Who", _who(report)),
        ("Rounds", _rounds(report)),
        ("Outcome", _outcome(report)),
        ("Privacy budget", _privacy(report)),
        ("Disputes", _disputes(report)),
        ("What this document is", _evidence(report)),
    )
    for title, text in sections:
        story += [Paragraph(title, HEAD), Paragraph(escape(text), TEXT)]
    return [*story, Spacer(1, 4 * mm), PageBreak()]


def _pdf_date(iso: str) -> str:
    """``2026-12-02T01:07:43.55+00:00`` -> ``D:20261202010743+00'00'`` (UTC)."""
    digits = iso[:19].replace("-", "").replace(":", "").replace("T", "")
    return f"D:{digits}+00'00'"


def numbered_canvas(footer: str, created_at: str) -> type[Canvas]:
    """A canvas class that numbers pages "page X of Y" and dates the PDF ``created_at``.

    Pages are kept until the end, when their number is known; the document is built in
    invariant mode (the same report gives the same bytes), so its creation date is set
    here rather than taken from the clock.
    """

    class NumberedCanvas(Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []
            self.setDateFormatter(lambda *_: _pdf_date(created_at))

        def showPage(self) -> None:  # reportlab's name
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            for number, state in enumerate(self._pages, start=1):
                self.__dict__.update(state)
                self.setFont("Helvetica", 7)
                self.drawString(18 * mm, 10 * mm, footer)
                self.drawRightString(
                    A4[0] - 18 * mm, 10 * mm, f"page {number} of {len(self._pages)}"
                )
                super().showPage()
            super().save()

    return NumberedCanvas

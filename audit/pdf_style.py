"""The audit PDF's type styles and table helpers, shared by its sections."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Table, TableStyle
from reportlab.platypus.flowables import Flowable

_STYLES = getSampleStyleSheet()
BODY = ParagraphStyle("body", parent=_STYLES["BodyText"], fontSize=8.5, leading=10.5)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=7.5, leading=9)
MONO = ParagraphStyle("mono", parent=BODY, fontName="Courier", fontSize=6.5, leading=8)
H1 = _STYLES["Title"]
H2 = _STYLES["Heading2"]
H3 = ParagraphStyle("h3", parent=_STYLES["Heading3"], fontSize=10.5, spaceBefore=8)
GRID = TableStyle(
    [
        ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8ecf2")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
)
FACTS = TableStyle(
    [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 2),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
        ("TOPPADDING", (0, 0), (-1, -1), 1),
    ]
)


def para(text: Any, style: ParagraphStyle = BODY) -> Paragraph:
    """``text`` as a paragraph, escaped: report data is never markup."""
    return Paragraph(escape("" if text is None else str(text)), style)


def mono(text: Any) -> Paragraph:
    """Digests and keys, in the monospaced style."""
    return para(text, MONO)


def when(iso: str | None) -> str:
    """``2026-11-27T09:02:00.123456+00:00`` -> ``2026-11-27 09:02:00 UTC``."""
    if not iso:
        return "-"
    return iso[:19].replace("T", " ") + " UTC"


def facts(rows: list[tuple[str, Any]]) -> Table:
    """Label and value rows, no grid."""
    cells = [
        [para(label, SMALL), value if isinstance(value, Flowable) else para(value)]
        for label, value in rows
    ]
    table = Table(cells, colWidths=[38 * mm, 132 * mm], hAlign="LEFT")
    table.setStyle(FACTS)
    return table


def grid(header: list[str], rows: list[list[Any]], widths: list[float]) -> Table:
    """A ruled table whose header row repeats on every page."""
    cells = [[para(h, SMALL) for h in header]]
    cells += [[c if isinstance(c, Flowable) else para(c, SMALL) for c in row] for row in rows]
    table = Table(cells, colWidths=widths, repeatRows=1, hAlign="LEFT")
    table.setStyle(GRID)
    return table

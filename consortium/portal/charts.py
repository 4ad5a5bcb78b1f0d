"""Server-rendered SVG line charts, and the per-round series they draw (pure: no Django).

A chart is a string of SVG markup built from escaped text and numbers only, so a page can
inline it as is. No JavaScript, no build step: hovering a point shows its value through
the SVG ``<title>`` element, which every browser renders as a tooltip.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any, Literal

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#8c6d1f")
EMPHASIS_COLOUR = "#1f2933"
FAINT_COLOUR = "#9aa5b1"
REFERENCE_COLOUR = "#d55e00"  # a limit (the privacy budget), dashed: not a series of values
BAND_COLOUR = "#9aa5b1"
MARKERS_UP_TO = 40  # points per series; beyond that, circles only clutter the line
LEGEND_WIDTH = 240  # pixels right of the plot


@dataclass(frozen=True)
class Series:
    """One line: ``points`` are (x, y) pairs sorted by x."""

    name: str
    points: Sequence[tuple[float, float]]
    emphasis: bool = False


@dataclass(frozen=True)
class Reference:
    """A horizontal line at ``value`` across the plot, named in the legend and its tooltip."""

    name: str
    value: float


@dataclass(frozen=True)
class Band:
    """A shaded range per x, e.g. the 10th to the 90th percentile of the banks' values."""

    name: str
    points: Sequence[tuple[float, float, float]]  # (x, low, high) sorted by x


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def metric_series(
    rows: Iterable[tuple[int, str, Mapping[str, Any]]],
    key: str,
    *,
    overall: Literal["mean", "max"] = "mean",
    overall_name: str,
) -> list[Series]:
    """Turn ``(round number, bank, metrics)`` rows into one line per bank plus an overall one.

    Values that are missing, not numbers or not finite are skipped (a bank reports what it
    chooses). The overall line combines, per round, the banks that reported ``key`` there.
    """
    per_bank: dict[str, list[tuple[float, float]]] = defaultdict(list)
    per_round: dict[int, list[float]] = defaultdict(list)
    for number, bank, metrics in rows:
        value = _finite(metrics.get(key)) if isinstance(metrics, Mapping) else None
        if value is None:
            continue
        per_bank[bank].append((number, value))
        per_round[number].append(value)
    if not per_round:
        return []
    combine = (lambda v: sum(v) / len(v)) if overall == "mean" else max
    lines = [Series(bank, sorted(points)) for bank, points in sorted(per_bank.items())]
    combined = [(n, combine(per_round[n])) for n in sorted(per_round)]
    return [*lines, Series(overall_name, combined, emphasis=True)]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0 to 1) of ``values``, interpolated between ranks as numpy does."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    below, above = math.floor(position), math.ceil(position)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def percentile_band(
    lines: Iterable[Series], name: str, low: float = 0.1, high: float = 0.9
) -> Band | None:
    """Per x, the ``low`` to ``high`` quantile of the ordinary lines' values (None if none)."""
    per_x: dict[float, list[float]] = defaultdict(list)
    for line in lines:
        if not line.emphasis:
            for x, y in line.points:
                per_x[x].append(y)
    if not per_x:
        return None
    points = [(x, percentile(v, low), percentile(v, high)) for x, v in sorted(per_x.items())]
    return Band(name, points)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering ``[low, high]``."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    ticks = [round(math.floor(low / step) * step, 10)]
    # Until the last tick reaches ``high``: a point above the top tick would leave the frame.
    while ticks[-1] < high - step * 1e-9 or len(ticks) < 2:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _label(value: float) -> str:
    text = f"{value:.4g}"
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class _Frame:
    left: float
    top: float
    width: float
    height: float
    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, value: float) -> float:
        return self.left + (value - self.x0) / (self.x1 - self.x0) * self.width

    def y(self, value: float) -> float:
        return self.top + self.height - (value - self.y0) / (self.y1 - self.y0) * self.height


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    y_label: str,
    x_label: str = "round",
    marker_x: float | None = None,
    width: int = 820,
    height: int = 300,
    legend_limit: int = 7,
    reference: Reference | None = None,
    band: Band | None = None,
) -> str:
    """Draw ``series`` as an SVG line chart with axes, ticks, a legend and tooltips.

    The emphasised series is drawn last, thick and dark. With more than ``legend_limit``
    ordinary series, they are all drawn thin and grey and the legend counts them.
    ``marker_x`` draws a dashed vertical line (e.g. "this round"); ``reference`` a dashed
    horizontal one across the plot (e.g. the privacy budget), always inside the y range;
    ``band`` a shaded range under the lines. The y axis fits the values drawn, not 0 to 1.
    """
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'class="chart" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    )
    points = [p for s in series for p in s.points]
    if band is not None:
        points += [(x, v) for x, low, high in band.points for v in (low, high)]
    if not points:
        return (
            f'{head}<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
            f'fill="#52606d" font-size="14">No values reported yet</text></svg>'
        )
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if reference is not None:
        ys.append(reference.value)
    x_ticks = _x_ticks(min(xs), max(xs))
    y_ticks = nice_ticks(*_y_range(min(ys), max(ys)))
    frame = _Frame(
        58, 16, width - 58 - LEGEND_WIDTH, height - 16 - 46,
        x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1],
    )  # fmt: skip
    parts = [head, _axes(frame, x_ticks, y_ticks, x_label, y_label)]
    if marker_x is not None and frame.x0 <= marker_x <= frame.x1:
        mx = frame.x(marker_x)
        parts.append(
            f'<line x1="{mx:.1f}" y1="{frame.top}" x2="{mx:.1f}" '
            f'y2="{frame.top + frame.height}" stroke="#52606d" stroke-dasharray="4 3"/>'
        )
    if band is not None:
        parts.append(_band(frame, band))
    if reference is not None:
        parts.append(_reference(frame, reference))
    ordinary = [s for s in series if not s.emphasis]
    faint = len(ordinary) > legend_limit
    styled = [
        (s, FAINT_COLOUR if faint else PALETTE[i % len(PALETTE)], 1.2 if faint else 2.0)
        for i, s in enumerate(ordinary)
    ] + [(s, EMPHASIS_COLOUR, 3.2) for s in series if s.emphasis]
    parts += [_line(frame, s, colour, stroke) for s, colour, stroke in styled]
    legend = _legend(
        width - LEGEND_WIDTH + 12, frame.top, styled, faint, len(ordinary), reference, band
    )
    parts.append(legend)
    parts.append("</svg>")
    return "".join(parts)


def _y_range(low: float, high: float) -> tuple[float, float]:
    """The values' own range with a little room; a flat line gets a band around it."""
    if high - low < 1e-9:
        pad = abs(high) * 0.05 or 0.05
        return low - pad, high + pad
    pad = (high - low) * 0.05
    # Not below zero when every value is a non-negative figure (AUPRC, ε).
    return (max(low - pad, 0.0) if low >= 0 else low - pad), high + pad


def _x_ticks(low: float, high: float) -> list[float]:
    if high - low < 1:
        return [low - 1, low, low + 1] if low >= 1 else [low, low + 1]
    ticks = [t for t in nice_ticks(low, high, 8) if t == int(t)]
    return ticks if len(ticks) >= 2 else [low, high]


def _axes(
    frame: _Frame, x_ticks: list[float], y_ticks: list[float], x_label: str, y_label: str
) -> str:
    bottom, right = frame.top + frame.height, frame.left + frame.width
    out = []
    for t in y_ticks:
        y = frame.y(t)
        out.append(
            f'<line x1="{frame.left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#e4e7eb"/>'
            f'<text x="{frame.left - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="#52606d">{_label(t)}</text>'
        )
    for t in x_ticks:
        x = frame.x(t)
        out.append(
            f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 5}" stroke="#7b8794"/>'
            f'<text x="{x:.1f}" y="{bottom + 19}" text-anchor="middle" font-size="12" '
            f'fill="#52606d">{_label(t)}</text>'
        )
    out.append(
        f'<line x1="{frame.left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#7b8794"/>'
        f'<line x1="{frame.left}" y1="{frame.top}" x2="{frame.left}" y2="{bottom}" '
        f'stroke="#7b8794"/>'
        f'<text x="{frame.left + frame.width / 2:.1f}" y="{bottom + 38}" text-anchor="middle" '
        f'font-size="12" fill="#323f4b">{escape(x_label)}</text>'
        f'<text x="14" y="{frame.top + frame.height / 2:.1f}" text-anchor="middle" '
        f'font-size="12" fill="#323f4b" transform="rotate(-90 14 '
        f'{frame.top + frame.height / 2:.1f})">{escape(y_label)}</text>'
    )
    return "".join(out)


def _line(frame: _Frame, series: Series, colour: str, stroke: float) -> str:
    coords = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in series.points)
    name = escape(series.name)
    out = [
        f'<g class="series{" series-emphasis" if series.emphasis else ""}" data-series="{name}">'
        f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="{stroke}" '
        f'stroke-linejoin="round" stroke-linecap="round"/>'
    ]
    if len(series.points) <= MARKERS_UP_TO:
        radius = 3.5 if series.emphasis else 2.5
        out += [
            f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="{radius}" fill="{colour}">'
            f"<title>{name}, round {_label(x)}: {y:.3f}</title></circle>"
            for x, y in series.points
        ]
    out.append("</g>")
    return "".join(out)


def _band(frame: _Frame, band: Band) -> str:
    upper = [f"{frame.x(x):.1f},{frame.y(high):.1f}" for x, _, high in band.points]
    lower = [f"{frame.x(x):.1f},{frame.y(low):.1f}" for x, low, _ in reversed(band.points)]
    name = escape(band.name)
    return (
        f'<g class="band" data-band="{name}"><polygon points="{" ".join(upper + lower)}" '
        f'fill="{BAND_COLOUR}" fill-opacity="0.35" stroke="none"><title>{name}</title>'
        f"</polygon></g>"
    )


def _reference(frame: _Frame, reference: Reference) -> str:
    y = frame.y(reference.value)
    name = escape(reference.name)
    return (
        f'<g class="reference" data-reference="{name}"><line x1="{frame.left}" y1="{y:.1f}" '
        f'x2="{frame.left + frame.width}" y2="{y:.1f}" stroke="{REFERENCE_COLOUR}" '
        f'stroke-width="2" stroke-dasharray="6 4"><title>{name}</title></line></g>'
    )


def _legend(
    left: float,
    top: float,
    styled: list[tuple[Series, str, float]],
    faint: bool,
    ordinary: int,
    reference: Reference | None = None,
    band: Band | None = None,
) -> str:
    rows = [(s.name, colour, stroke, "") for s, colour, stroke in styled if s.emphasis]
    if band is not None:
        rows.append((band.name, BAND_COLOUR, 8.0, ' stroke-opacity="0.35"'))
    if reference is not None:
        rows.append((reference.name, REFERENCE_COLOUR, 2.0, ' stroke-dasharray="6 4"'))
    if faint:
        rows.append((f"{ordinary} banks, one line each", FAINT_COLOUR, 1.2, ""))
    else:
        rows += [(s.name, colour, stroke, "") for s, colour, stroke in styled if not s.emphasis]
    out = []
    for i, (name, colour, stroke, dash) in enumerate(rows):
        y = top + 8 + i * 20
        out.append(
            f'<line x1="{left}" y1="{y}" x2="{left + 22}" y2="{y}" stroke="{colour}" '
            f'stroke-width="{stroke}"{dash}/><text x="{left + 30}" y="{y + 4}" font-size="12" '
            f'fill="#323f4b">{escape(_shorten(name, 32))}</text>'
        )
    return "".join(out)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""The SVG charts and the series behind them: pure functions, no Django, no database."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from consortium.portal.charts import (
    Series,
    line_chart,
    metric_series,
    nice_ticks,
    percentile,
    percentile_band,
)

SVG = "{http://www.w3.org/2000/svg}"


def test_the_consortium_line_is_the_mean_of_the_banks_that_reported_in_each_round():
    rows = [
        (1, "alpha", {"auprc": 0.2}),
        (1, "beta", {"auprc": 0.4}),
        (2, "alpha", {"auprc": 0.5}),
        (2, "beta", {"loss": 0.1}),  # beta did not report AUPRC in round 2
    ]
    series = metric_series(rows, "auprc", overall_name="mean")
    assert [s.name for s in series] == ["alpha", "beta", "mean"]
    assert series[-1].emphasis
    assert series[-1].points == [(1, pytest.approx(0.3)), (2, 0.5)]
    assert series[1].points == [(1, 0.4)]


def test_values_that_are_not_finite_numbers_are_skipped():
    rows: list[tuple[int, str, Any]] = [
        (1, "a", {"auprc": math.nan}),
        (1, "b", {"auprc": True}),
        (1, "c", {"auprc": "0.5"}),
        (2, "a", {"auprc": math.inf}),
        (3, "a", "not a dict"),
    ]
    assert metric_series(rows, "auprc", overall_name="mean") == []


def test_the_epsilon_line_is_the_highest_any_bank_spent():
    rows = [(1, "a", {"epsilon": 0.5}), (1, "b", {"epsilon": 1.5}), (2, "a", {"epsilon": 2.0})]
    series = metric_series(rows, "epsilon", overall="max", overall_name="max")
    assert series[-1].points == [(1, 1.5), (2, 2.0)]


def test_ticks_are_round_numbers_that_cover_the_range():
    assert nice_ticks(0, 0.63) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8])
    assert nice_ticks(0, 1) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ticks = nice_ticks(3, 997, 8)
    assert ticks[0] <= 3 and ticks[-1] >= 997


def test_a_chart_is_valid_svg_with_one_line_per_series_and_a_tooltip_per_point():
    series = [Series("alpha", [(1, 0.2), (2, 0.3)]), Series("mean", [(1, 0.25), (2, 0.35)], True)]
    root = ET.fromstring(line_chart(series, title="AUPRC", y_label="AUPRC"))
    groups = root.findall(f"{SVG}g")
    assert [g.get("data-series") for g in groups] == ["alpha", "mean"]
    assert len(root.findall(f".//{SVG}polyline")) == 2
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert "alpha, round 2: 0.300" in titles


def test_text_in_a_chart_is_escaped():
    svg = line_chart([Series("<script>alert(1)</script>", [(1, 0.5)])], title="a&b", y_label="y")
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    ET.fromstring(svg)  # still well-formed


def test_many_banks_are_drawn_grey_and_counted_in_the_legend():
    series = [Series(f"bank-{i}", [(1, 0.1 * i)]) for i in range(12)]
    svg = line_chart([*series, Series("mean", [(1, 0.5)], True)], title="t", y_label="y")
    assert "12 banks, one line each" in svg
    assert "bank-3</text>" not in svg


def test_a_single_round_still_gets_a_readable_x_axis():
    root = ET.fromstring(line_chart([Series("a", [(1, 0.4)])], title="t", y_label="y"))
    assert root.findall(f".//{SVG}circle")


def test_an_empty_chart_says_so():
    assert "No values reported yet" in line_chart([], title="t", y_label="y")


def test_the_marker_line_is_drawn_only_inside_the_plotted_rounds():
    series = [Series("a", [(1, 0.1), (5, 0.5)])]
    with_marker = line_chart(series, title="t", y_label="y", marker_x=3)
    outside = line_chart(series, title="t", y_label="y", marker_x=50)
    assert "stroke-dasharray" in with_marker and "stroke-dasharray" not in outside


def test_the_band_runs_from_the_10th_to_the_90th_percentile_of_the_banks_each_round():
    lines = [Series(f"b{i}", [(1, i / 10), (2, 0.5)]) for i in range(11)]
    band = percentile_band([*lines, Series("mean", [(1, 0.5)], emphasis=True)], "band")
    assert band is not None
    assert band.points == [(1, pytest.approx(0.1), pytest.approx(0.9)), (2, 0.5, 0.5)]
    assert percentile([1.0, 2.0], 0.5) == 1.5


def test_the_band_is_drawn_under_the_lines_and_named_in_the_legend():
    band = percentile_band([Series("a", [(1, 0.2)]), Series("b", [(1, 0.4)])], "middle 80%")
    svg = line_chart([Series("mean", [(1, 0.3)], True)], title="t", y_label="y", band=band)
    root = ET.fromstring(svg)
    assert root.find(f"{SVG}g[@data-band='middle 80%']/{SVG}polygon") is not None
    assert svg.index('class="band"') < svg.index('class="series')
    assert "middle 80%</text>" in svg


def test_the_y_axis_fits_the_values_instead_of_starting_at_zero():
    svg = line_chart([Series("a", [(1, 0.62), (2, 0.68)])], title="t", y_label="y")
    labels = [
        float(t.text)
        for t in ET.fromstring(svg).iter(f"{SVG}text")
        if t.get("text-anchor") == "end" and t.text
    ]
    assert min(labels) >= 0.6 and max(labels) <= 0.7

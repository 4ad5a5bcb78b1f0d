"""The pyarrow CSV path stages the values pandas reads, and leaves every odd cell to pandas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from bank_node.csv_arrow import NotFast, arrow_tables
from bank_node.data import DataError, load_transactions
from bank_node.staging import SCHEMA, _table, staged_tables
from simulation.world.presets import IBM_HEADER

ROWS = 3_000
LATE = 2_500  # a row in a later block than the first (blocks of about 100 rows below)


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """These tests touch no Django (the repo-wide fixture of this name needs it)."""


def bank_csv(path: Path, late_row: list[str] | None = None) -> Path:
    """An IBM CSV of ROWS rows; ``late_row`` replaces the row on line LATE."""
    rng = np.random.default_rng(0)
    lines = [",".join(IBM_HEADER)]
    for i in range(ROWS):
        amount = f"{rng.lognormal(5, 2):.2f}"
        lines.append(",".join([
            f"2022/09/{1 + i // 200:02d} {i % 24:02d}:{i % 60:02d}", str(1 + i % 3),
            f"A{i % 40}", str(1 + i % 5), f"B{i % 70}", amount, "US Dollar", amount,
            "US Dollar", ["ACH", "Wire", "Cheque"][i % 3], str(int(i % 97 == 0)),
        ]))  # fmt: skip
    if late_row is not None:
        lines[LATE - 1] = ",".join(late_row)
    path.write_text("\n".join(lines) + "\n")
    return path


def pandas_staged(path: Path) -> pa.Table:
    """What staging wrote before the fast path: bank_node.data's frame, staged."""
    frame = load_transactions(path)
    return _table(frame, np.arange(len(frame)) + 2, 0, 0)


def fast_staged(path: Path) -> pa.Table:
    return pa.concat_tables(t.cast(SCHEMA) for t in staged_tables([path], chunk_rows=100))


def good_row(**cells: str) -> list[str]:
    row = dict(zip(range(11), ["2022/09/05 10:00", "1", "A1", "2", "B2", "12.50", "US Dollar",
                               "12.50", "US Dollar", "ACH", "0"], strict=True))  # fmt: skip
    for index, value in cells.items():
        row[int(index[1:])] = value
    return [row[i] for i in range(11)]


def test_the_fast_reader_stages_exactly_what_pandas_reads(tmp_path: Path) -> None:
    path = bank_csv(tmp_path / "bank.csv")
    tables = list(arrow_tables(path, source=0, first_rid=0, block_bytes=8_000))
    assert len(tables) > 2  # several blocks
    staged = pa.concat_tables(t.cast(SCHEMA) for t in tables)
    assert staged.equals(pandas_staged(path))


@pytest.mark.parametrize(
    ("cells", "refused"),
    [
        ({"c0": " 2022/09/05 10:00"}, True),  # pandas strips blanks around a cell
        ({"c0": "2022/9/5 10:00"}, True),  # pandas reads an unpadded date
        ({"c2": "A1 "}, True),
        ({"c9": "\u00a0ACH"}, True),  # a no-break space is a blank to str.strip()
        ({"c10": " 1"}, True),
        ({"c5": " 12.50"}, False),  # pyarrow's number parser skips the blank, as pandas does
        ({"c5": "1.25e1"}, False),
    ],
)
def test_a_cell_pandas_must_judge_is_read_by_pandas_and_the_values_are_the_same(
    tmp_path: Path, cells: dict[str, str], refused: bool
) -> None:
    path = bank_csv(tmp_path / "bank.csv", good_row(**cells))
    try:
        list(arrow_tables(path, source=0, first_rid=0, block_bytes=8_000))
        fast = True
    except NotFast:
        fast = False
    assert fast is not refused
    assert fast_staged(path).equals(pandas_staged(path))


@pytest.mark.parametrize(
    "cells",
    [
        {"c5": "-3.00"},
        {"c7": "nan"},
        {"c2": ""},
        {"c0": "2022/02/30 10:00"},
        {"c0": "yesterday"},
        {"c10": "2"},
        {"c9": "ACH,extra"},  # one field too many
    ],
)
def test_a_bad_cell_in_a_later_block_is_the_same_error_pandas_gives(
    tmp_path: Path, cells: dict[str, str]
) -> None:
    path = bank_csv(tmp_path / "bank.csv", good_row(**cells))
    with pytest.raises(DataError) as expected:
        load_transactions(path)
    with pytest.raises(DataError) as raised:
        fast_staged(path)
    assert str(raised.value) == str(expected.value)
    assert raised.value.line == LATE


def test_a_blank_line_is_refused_with_its_line_number(tmp_path: Path) -> None:
    path = bank_csv(tmp_path / "bank.csv")
    lines = path.read_text().splitlines()
    lines[LATE - 1] = ""
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as raised:
        fast_staged(path)
    assert raised.value.line == LATE

"""load_ibm_csv and chronological_split: happy paths and precise errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bank_node.data import DataError, chronological_split, load_ibm_csv

HEADER = (
    "Timestamp,From Bank,Account,To Bank,Account,Amount Received,Receiving Currency,"
    "Amount Paid,Payment Currency,Payment Format,Is Laundering"
)
ROWS = [
    "2022/09/01 00:20,010,8000EBD30,010,8000EBD30,3697.34,US Dollar,3697.34,US Dollar,Reinvestment,0",
    "2022/09/01 00:20,03208,8000F4580,001,8000F5340,0.01,US Dollar,0.01,US Dollar,Cheque,0",
    "2022/09/01 00:00,03209,8000F4670,03209,8000F4670,14675.57,Euro,14675.57,Euro,Reinvestment,1",
]


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """Stand in for the repo-wide autouse fixture of that name, which needs pytest-django's
    ``settings``; these tests touch no Django and also run with ``-p no:django``."""


def write(tmp_path: Path, header: str, rows: list[str], name: str = "bank.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_an_ibm_file_loads_with_normalised_names_and_types(tmp_path: Path) -> None:
    frame = load_ibm_csv(write(tmp_path, HEADER, ROWS))
    assert list(frame.columns) == [
        "timestamp", "from_bank", "from_account", "to_bank", "to_account", "amount_received",
        "receiving_currency", "amount_paid", "payment_currency", "payment_format", "label",
    ]  # fmt: skip
    assert frame["timestamp"].dtype.kind == "M"
    assert frame["timestamp"][0] == pd.Timestamp("2022-09-01 00:20")
    assert frame["amount_paid"].dtype == np.float64 and frame["amount_paid"][2] == 14675.57
    assert frame["label"].dtype == np.int8 and frame["label"].tolist() == [0, 0, 1]


def test_the_two_account_columns_keep_sender_and_receiver_apart(tmp_path: Path) -> None:
    frame = load_ibm_csv(write(tmp_path, HEADER, ROWS))
    assert (frame["from_bank"][1], frame["from_account"][1]) == ("03208", "8000F4580")
    assert (frame["to_bank"][1], frame["to_account"][1]) == ("001", "8000F5340")


def test_trailing_extra_columns_are_ignored(tmp_path: Path) -> None:
    rows = [row + ",A000001,fan_out" for row in ROWS]
    frame = load_ibm_csv(write(tmp_path, HEADER + ",Attempt ID,Typology", rows))
    assert len(frame) == 3 and "Typology" not in frame.columns


def test_reading_in_small_chunks_gives_the_same_frame(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER, ROWS)
    pd.testing.assert_frame_equal(load_ibm_csv(path, chunksize=1), load_ibm_csv(path))


def test_a_header_only_file_gives_an_empty_frame_with_the_normalised_columns(
    tmp_path: Path,
) -> None:
    frame = load_ibm_csv(write(tmp_path, HEADER, []))
    assert len(frame) == 0 and frame["label"].dtype == np.int8


BAD_CASES = {
    "missing column": (HEADER.replace(",Amount Paid", ""), ROWS, 1, "Amount Paid"),
    "only one Account column": (HEADER.replace("To Bank,Account", "To Bank,Acct"), ROWS, 1, "Account"),
    "bad timestamp": (HEADER, [ROWS[0], ROWS[1].replace("2022/09/01 00:20", "01-09-2022")], 3, "Timestamp"),
    "non-numeric amount": (HEADER, [ROWS[0], ROWS[1], ROWS[2].replace("14675.57,Euro,R", "lots,Euro,R")], 4, "Amount Paid"),
    "label not 0/1": (HEADER, [ROWS[0][:-1] + "2"], 2, "Is Laundering"),
    "too many fields": (HEADER, [ROWS[0], ROWS[1] + ",surplus"], 3, "field 12"),
    "too many fields on the first row": (HEADER, [ROWS[0] + ",x", ROWS[1] + ",x"], 2, "field 12"),
    "too few fields": (HEADER, [ROWS[0], ",".join(ROWS[1].split(",")[:9])], 3, "Payment Format"),
    "empty account": (HEADER, [ROWS[0].replace("8000EBD30,010", ",010", 1)], 2, "Account"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("header", "rows", "line", "column"), BAD_CASES.values(), ids=BAD_CASES.keys()
)
def test_a_malformed_file_raises_a_data_error_naming_file_line_and_column(
    tmp_path: Path, header: str, rows: list[str], line: int, column: str
) -> None:
    path = write(tmp_path, header, rows)
    with pytest.raises(DataError) as caught:
        load_ibm_csv(path)
    error = caught.value
    assert (error.path, error.line, error.column) == (str(path), line, column)
    assert str(path) in str(error) and f"line {line}" in str(error) and column in str(error)


def test_an_error_in_a_later_chunk_reports_its_line_in_the_file(tmp_path: Path) -> None:
    rows = ROWS * 3 + [ROWS[0].replace("3697.34,US", "x,US")]
    with pytest.raises(DataError) as caught:
        load_ibm_csv(write(tmp_path, HEADER, rows), chunksize=4)
    assert (caught.value.line, caught.value.column) == (11, "Amount Received")


def test_an_empty_file_is_a_data_error_on_line_1(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError) as caught:
        load_ibm_csv(path)
    assert caught.value.line == 1


def timed(minutes: list[int]) -> pd.DataFrame:
    stamps = pd.Timestamp("2022-09-01") + pd.to_timedelta(minutes, unit="min")
    return pd.DataFrame({"timestamp": stamps, "label": np.zeros(len(minutes), np.int8)})


def test_a_time_split_cuts_the_span_at_the_fractions_and_sorts_by_time() -> None:
    frame = timed([100, 0, 59, 60, 79, 80, 99, 61])
    train, val, test = chronological_split(frame)
    assert [len(train), len(val), len(test)] == [2, 3, 3]  # cuts at minutes 60 and 80
    assert train["timestamp"].is_monotonic_increasing
    assert train["timestamp"].max() < val["timestamp"].min()
    assert val["timestamp"].max() < test["timestamp"].min()


def test_rows_with_the_same_timestamp_never_straddle_a_time_cut() -> None:
    train, val, test = chronological_split(timed([0, 60, 60, 60, 100]))
    assert [len(train), len(val), len(test)] == [1, 3, 1]


def test_a_row_split_cuts_at_the_fractions_of_the_row_count() -> None:
    train, val, test = chronological_split(timed([0, 1, 2, 3, 4, 5, 6, 7, 8, 1000]), by="rows")
    assert [len(train), len(val), len(test)] == [6, 2, 2]


@pytest.mark.parametrize("fractions", [(0.5, 0.2, 0.2), (0.7, 0.4, -0.1), ()])
def test_fractions_that_do_not_sum_to_one_are_refused(fractions: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="fractions"):
        chronological_split(timed([0, 1]), fractions)

"""Read IBM AML transaction CSVs into a normalised frame, and split it chronologically."""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

TIMESTAMP_FORMAT = "%Y/%m/%d %H:%M"
# (header name, occurrence of that name, normalised name); IBM repeats "Account".
REQUIRED_COLUMNS = [
    ("Timestamp", 0, "timestamp"),
    ("From Bank", 0, "from_bank"),
    ("Account", 0, "from_account"),
    ("To Bank", 0, "to_bank"),
    ("Account", 1, "to_account"),
    ("Amount Received", 0, "amount_received"),
    ("Receiving Currency", 0, "receiving_currency"),
    ("Amount Paid", 0, "amount_paid"),
    ("Payment Currency", 0, "payment_currency"),
    ("Payment Format", 0, "payment_format"),
    ("Is Laundering", 0, "label"),
]
NORMALISED_COLUMNS = [name for _, _, name in REQUIRED_COLUMNS]
_TEXT_COLUMNS = ["from_bank", "from_account", "to_bank", "to_account",
                 "receiving_currency", "payment_currency", "payment_format"]  # fmt: skip


class DataError(ValueError):
    """A transaction file that cannot be read; says where (file, 1-based line, column)."""

    def __init__(
        self, path: Path | str, line: int | None, column: str | None, problem: str
    ) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        self.problem = problem
        where = f"line {line}" if line is not None else "unknown line"
        super().__init__(f"{self.path}, {where}, column {column or '-'}: {problem}")


def load_ibm_csv(path: Path | str, *, chunksize: int = 200_000) -> pd.DataFrame:
    """Load an IBM "Transactions for Anti Money Laundering" CSV (or our synthetic one).

    Returns columns `NORMALISED_COLUMNS`: ``timestamp`` (datetime64), the bank, account,
    currency and format columns as strings, ``amount_received``/``amount_paid`` (float64)
    and ``label`` (int8). Columns after the IBM ones are ignored. Any malformed content
    raises `DataError` naming the file, line (header = line 1) and column.
    """
    path = Path(path)
    header, positions = _header_positions(path)
    parts = []
    line = 2  # line of the first data row; assumes one physical line per row, as IBM writes
    try:
        with warnings.catch_warnings():
            # A surplus field on the first data row only warns (pandas drops it); refuse it.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            reader = pd.read_csv(
                path, dtype=str, keep_default_na=False, skip_blank_lines=False,
                index_col=False, chunksize=chunksize, encoding="utf-8",
            )  # fmt: skip
            for chunk in reader:
                parts.append(_normalise(chunk.iloc[:, positions], positions, path, line))
                line += len(chunk)
    except pd.errors.ParserWarning:
        raise _surplus_on_first_row(path, len(header)) from None
    except pd.errors.ParserError as exc:
        raise _parser_error(path, exc) from None
    except UnicodeDecodeError as exc:
        raise DataError(path, None, None, f"not UTF-8 text ({exc.reason})") from None
    if not parts:
        return _empty_frame()
    return pd.concat(parts, ignore_index=True)


def _header_positions(path: Path) -> tuple[list[str], list[int]]:
    """The header's fields and the positions of the required columns in it.

    Raises a DataError on line 1 naming the first required column that is missing.
    """
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    header = [name.strip() for name in header]
    if not header:
        raise DataError(path, 1, None, "empty file: no header line")
    positions = []
    for name, occurrence, _ in REQUIRED_COLUMNS:
        found = [i for i, field in enumerate(header) if field == name]
        if len(found) <= occurrence:
            which = " (the second one, for the receiving account)" if occurrence else ""
            raise DataError(path, 1, name, f"required column {name!r} missing{which}")
        positions.append(found[occurrence])
    return header, positions


def _surplus_on_first_row(path: Path, expected: int) -> DataError:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        rows = csv.reader(handle)
        next(rows, None)
        saw = len(next(rows, []))
    return DataError(path, 2, f"field {expected + 1}", f"expected {expected} fields, found {saw}")


def _parser_error(path: Path, exc: Exception) -> DataError:
    # pandas reports e.g. "Expected 11 fields in line 7, saw 12", counting the header as line 1.
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
    if match is None:
        return DataError(path, None, None, f"unreadable CSV: {exc}")
    expected, line, saw = (int(g) for g in match.groups())
    return DataError(
        path, line, f"field {expected + 1}", f"expected {expected} fields, found {saw}"
    )


_Check = Callable[[pd.Series], tuple[pd.Series, np.ndarray]]


def _normalise(
    raw: pd.DataFrame, positions: list[int], path: Path, first_line: int
) -> pd.DataFrame:
    """Convert one chunk of text columns; the earliest bad cell becomes a DataError."""
    raw = raw.set_axis(NORMALISED_COLUMNS, axis=1).reset_index(drop=True)
    out: dict[str, pd.Series] = {}
    bad: list[np.ndarray] = []
    for (_, _, name), check in zip(REQUIRED_COLUMNS, _checks(), strict=True):
        out[name], flags = check(raw[name])
        bad.append(flags)
    _raise_first_bad(np.column_stack(bad), raw, positions, path, first_line)
    return pd.DataFrame(out)


def _checks() -> list[_Check]:
    text, amount = _check_text, _check_amount
    return [
        _check_timestamp,
        text,
        text,
        text,
        text,
        amount,
        text,
        amount,
        text,
        text,
        _check_label,
    ]


def _check_timestamp(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    parsed = pd.to_datetime(values.str.strip(), format=TIMESTAMP_FORMAT, errors="coerce")
    return parsed, parsed.isna().to_numpy()


def _check_amount(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    parsed = pd.to_numeric(values.str.strip(), errors="coerce").astype("float64")
    ok = np.isfinite(parsed.to_numpy()) & (parsed.to_numpy() >= 0)
    return parsed, ~ok


def _check_text(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    stripped = values.str.strip()
    return stripped, (stripped == "").to_numpy()


def _check_label(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    stripped = values.str.strip()
    ok = stripped.isin(["0", "1"]).to_numpy()
    return pd.Series(np.where(ok, stripped == "1", 0), dtype="int8"), ~ok


_EXPECTATIONS = {
    "Timestamp": f"a timestamp like 2022/09/01 14:05 ({TIMESTAMP_FORMAT})",
    "Amount Received": "a non-negative number",
    "Amount Paid": "a non-negative number",
    "Is Laundering": "0 or 1",
}


def _raise_first_bad(
    bad: np.ndarray, raw: pd.DataFrame, positions: list[int], path: Path, first_line: int
) -> None:
    rows = np.flatnonzero(bad.any(axis=1))
    if len(rows) == 0:
        return
    row = int(rows[0])
    col = int(np.flatnonzero(bad[row])[0])
    header = REQUIRED_COLUMNS[col][0]
    value = raw.iloc[row, col]
    expected = _EXPECTATIONS.get(header, "a non-empty value")
    problem = f"field {positions[col] + 1}: expected {expected}, found {value!r}"
    if value == "":
        problem += " (empty field, or the row has too few fields)"
    raise DataError(path, first_line + row, header, problem)


def _empty_frame() -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype=str) for name in NORMALISED_COLUMNS})
    frame["timestamp"] = pd.Series(dtype="datetime64[us]")
    frame[["amount_received", "amount_paid"]] = frame[["amount_received", "amount_paid"]].astype(
        "float64"
    )
    frame["label"] = frame["label"].astype("int8")
    return frame


def chronological_split(
    df: pd.DataFrame, fractions: Sequence[float] = (0.6, 0.2, 0.2), *, by: str = "time"
) -> tuple[pd.DataFrame, ...]:
    """Split a normalised frame into consecutive periods (train, val, test by default).

    ``by="time"`` cuts the span from the first to the last timestamp at the cumulative
    fractions, matching the synthetic world's "first 60% of time" training period.
    ``by="rows"`` cuts the time-ordered rows at those fractions of their count instead,
    which suits real files whose volume is uneven over time. Rows keep their relative
    order; ties in time never straddle a ``"time"`` cut.
    """
    cuts = _cumulative(fractions)
    ordered = df.iloc[np.argsort(df["timestamp"].to_numpy(), kind="stable")]
    if by == "rows":
        bounds = np.round(cuts * len(ordered)).astype(int)
    elif by == "time":
        bounds = _time_bounds(ordered["timestamp"], cuts)
    else:
        raise ValueError(f"by must be 'time' or 'rows', not {by!r}")
    starts = np.concatenate([[0], bounds[:-1]])
    return tuple(ordered.iloc[a:b] for a, b in zip(starts, bounds, strict=True))


def _time_bounds(stamps: pd.Series, cuts: np.ndarray) -> np.ndarray:
    micros = stamps.to_numpy().astype("datetime64[us]").astype(np.int64)
    if len(micros) == 0:
        return np.zeros(len(cuts), int)
    edges = micros[0] + (micros[-1] - micros[0]) * cuts[:-1]
    return np.append(np.searchsorted(micros, edges, side="left"), len(micros))


def _cumulative(fractions: Sequence[float]) -> np.ndarray:
    values = np.asarray(fractions, dtype=float)
    if values.ndim != 1 or len(values) == 0 or (values < 0).any() or abs(values.sum() - 1) > 1e-6:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {list(fractions)}")
    cuts = np.cumsum(values)
    cuts[-1] = 1.0
    return cuts

"""Read transaction CSVs (IBM AML, PaySim, ULB creditcard) into one normalised frame; split it."""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bank_node.schemas import DATA_FORMATS, EXPECTED, FORMATS, IBM, PAYSIM, ULB, TransactionFormat


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


def load_transactions(
    path: Path | str, *, chunksize: int = 200_000, data_format: str = "auto"
) -> pd.DataFrame:
    """Load any known transaction file, recognised by its header (IBM AML, PaySim, ULB).

    Every format gives the `NORMALISED_COLUMNS`; PaySim adds ``transaction_type`` and
    ``rule_flag`` (its ``isFlaggedFraud`` rule, never the label), ULB adds ``v1``..``v28``.
    A header matching no format raises `DataError` listing the formats we know.
    ``data_format`` ("ibm", "paysim", "ulb") reads the file as that format instead of
    recognising it; a header lacking one of its columns raises `DataError` naming it.
    """
    return _load(Path(path), check_header(path, data_format), chunksize)


def detect_format(path: Path | str) -> TransactionFormat:
    """The format whose required columns the file's header holds.

    A header that shares most columns with one format but misses some is reported as
    that format with the first missing column named, rather than as an unknown format.
    """
    path = Path(path)
    header = _read_header(path)
    overlap = {
        key: sum(1 for c in fmt.columns if c.header in header) / len(fmt.columns)
        for key, fmt in FORMATS.items()
    }
    best = max(overlap, key=lambda key: overlap[key])
    if overlap[best] < 0.5:
        nearest = FORMATS[best] if overlap[best] > 0 else None
        raise DataError(path, 1, None, _unknown_header(header, nearest))
    return FORMATS[best]


def _unknown_header(header: list[str], nearest: TransactionFormat | None) -> str:
    """Which columns the nearest format still needs, then every format we know."""
    known = "; ".join(f"{f.name} ({', '.join(dict.fromkeys(f.headers))})"
                      for f in FORMATS.values())  # fmt: skip
    near = ""
    if nearest is not None:
        missing = [h for h in dict.fromkeys(nearest.headers) if h not in header]
        near = f"; the nearest, {nearest.name}, also needs columns {', '.join(missing)}"
    return f"header matches no known format{near}. Known formats: {known}"


def check_header(path: Path | str, data_format: str = "auto") -> TransactionFormat:
    """The file's format, once its header holds every column that format needs.

    Reads the header line only: a node checks its ``data_file`` at start-up this way, so
    a wrong file is refused at once rather than at the first round. ``data_format`` "auto"
    recognises the format from the header; a format's key ("ibm", "paysim", "ulb") names it.
    """
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"data_format must be one of {', '.join(DATA_FORMATS)}, not {data_format!r}"
        )
    fmt = detect_format(path) if data_format == "auto" else FORMATS[data_format]
    _positions(Path(path), _read_header(Path(path)), fmt)
    return fmt


def load_ibm_csv(path: Path | str, *, chunksize: int = 200_000) -> pd.DataFrame:
    """Load an IBM "Transactions for Anti Money Laundering" CSV (or our synthetic one).

    Returns columns `NORMALISED_COLUMNS`: ``timestamp`` (datetime64), the bank, account,
    currency and format columns as strings, ``amount_received``/``amount_paid`` (float64)
    and ``label`` (int8). Columns after the IBM ones are ignored. Any malformed content
    raises `DataError` naming the file, line (header = line 1) and column.
    """
    return _load(Path(path), IBM, chunksize)


def load_paysim_csv(path: Path | str, *, chunksize: int = 200_000) -> pd.DataFrame:
    """Load a PaySim CSV: ``step`` hours from `PAYSIM_START`, accounts hashed to banks."""
    return _load(Path(path), PAYSIM, chunksize)


def load_ulb_csv(path: Path | str, *, chunksize: int = 200_000) -> pd.DataFrame:
    """Load ULB's ``creditcard.csv``: one synthetic card and merchant per row, plus v1..v28."""
    return _load(Path(path), ULB, chunksize)


def iter_transactions(path: Path | str, *, chunksize: int = 200_000) -> Iterator[pd.DataFrame]:
    """The file as `load_transactions` reads it, one normalised chunk at a time.

    Each chunk's index is its rows' 0-based position in the file (CSV line minus 2), so a
    reader holding one chunk at a time still knows every row's line; the first bad cell
    raises the same `DataError` as `load_transactions`, once the reader reaches it.
    """
    path = Path(path)
    yield from _chunks(path, detect_format(path), chunksize)


def _load(path: Path, fmt: TransactionFormat, chunksize: int) -> pd.DataFrame:
    parts = list(_chunks(path, fmt, chunksize))
    if len(parts) == 1:
        return parts[0].reset_index(drop=True)
    return pd.concat(parts, ignore_index=True)


def _chunks(path: Path, fmt: TransactionFormat, chunksize: int) -> Iterator[pd.DataFrame]:
    header = _read_header(path)
    positions = _positions(path, header, fmt)
    line = 2  # line of the first data row; assumes one physical line per row, as all three write
    reader = _raw_chunks(path, len(header), chunksize)
    for chunk in reader:
        part = _normalise(chunk.iloc[:, positions], fmt, positions, path, line)
        part.index = pd.RangeIndex(line - 2, line - 2 + len(part))
        line += len(chunk)
        yield part
    if line == 2:
        empty = {c.name: pd.Series(dtype=str) for c in fmt.columns}
        yield _normalise(pd.DataFrame(empty), fmt, positions, path, 2)


def _raw_chunks(path: Path, fields: int, chunksize: int) -> Iterator[pd.DataFrame]:
    """The file's text cells, ``chunksize`` rows at a time; a malformed row is a DataError."""
    try:
        with warnings.catch_warnings():
            # A surplus field on the first data row only warns (pandas drops it); refuse it.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            reader = pd.read_csv(
                path, dtype=str, keep_default_na=False, skip_blank_lines=False,
                index_col=False, chunksize=chunksize, encoding="utf-8",
            )  # fmt: skip
        while True:
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                chunk = next(reader, None)
            if chunk is None or len(chunk) == 0:
                return
            yield chunk
    except pd.errors.ParserWarning:
        raise _surplus_on_first_row(path, fields) from None
    except pd.errors.ParserError as exc:
        raise _parser_error(path, exc) from None
    except UnicodeDecodeError as exc:
        raise DataError(path, None, None, f"not UTF-8 text ({exc.reason})") from None


def _read_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            header = next(csv.reader(handle), [])
    except OSError as exc:
        raise DataError(path, None, None, f"cannot open: {exc.strerror}") from None
    header = [name.strip() for name in header]
    if not header:
        raise DataError(path, 1, None, "empty file: no header line")
    return header


def _positions(path: Path, header: list[str], fmt: TransactionFormat) -> list[int]:
    """Positions of the format's required columns; a DataError on line 1 names a missing one."""
    positions = []
    for column in fmt.columns:
        found = [i for i, field in enumerate(header) if field == column.header]
        if len(found) <= column.occurrence:
            which = " (the second one, for the receiving account)" if column.occurrence else ""
            raise DataError(
                path, 1, column.header,
                f"required {fmt.name} column {column.header!r} missing{which}",
            )  # fmt: skip
        positions.append(found[column.occurrence])
    return positions


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


def _normalise(
    raw: pd.DataFrame, fmt: TransactionFormat, positions: list[int], path: Path, first_line: int
) -> pd.DataFrame:
    """Convert one chunk of text columns; the earliest bad cell becomes a DataError."""
    raw = raw.set_axis([c.name for c in fmt.columns], axis=1).reset_index(drop=True)
    values: dict[str, pd.Series] = {}
    bad: list[np.ndarray] = []
    for column in fmt.columns:
        values[column.name], flags = column.check(raw[column.name])
        bad.append(flags)
    _raise_first_bad(np.column_stack(bad), raw, fmt, positions, path, first_line)
    return fmt.build(values, first_line - 2)


def _raise_first_bad(
    bad: np.ndarray,
    raw: pd.DataFrame,
    fmt: TransactionFormat,
    positions: list[int],
    path: Path,
    first_line: int,
) -> None:
    if bad.size == 0:
        return
    rows = np.flatnonzero(bad.any(axis=1))
    if len(rows) == 0:
        return
    row = int(rows[0])
    col = int(np.flatnonzero(bad[row])[0])
    column = fmt.columns[col]
    value = raw.iloc[row, col]
    expected = EXPECTED.get(column.check, "a non-empty value")
    problem = f"field {positions[col] + 1}: expected {expected}, found {value!r}"
    if value == "":
        problem += " (empty field, or the row has too few fields)"
    raise DataError(path, first_line + row, column.header, problem)


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
    cuts = cumulative_fractions(fractions)
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


def cumulative_fractions(fractions: Sequence[float]) -> np.ndarray:
    values = np.asarray(fractions, dtype=float)
    if values.ndim != 1 or len(values) == 0 or (values < 0).any() or abs(values.sum() - 1) > 1e-6:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {list(fractions)}")
    cuts = np.cumsum(values)
    cuts[-1] = 1.0
    return cuts

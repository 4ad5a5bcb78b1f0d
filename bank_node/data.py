"""Read transaction CSVs (IBM AML, PaySim, ULB creditcard) into one normalised frame; split it."""

from __future__ import annotations

import csv
import re
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

TIMESTAMP_FORMAT = "%Y/%m/%d %H:%M"
# Formats without calendar time get one: PaySim's ``step`` counts hours and ULB's ``Time``
# counts seconds from these (arbitrary but fixed) starts; ULB's data is from September 2013.
PAYSIM_START = pd.Timestamp("2022-09-01 00:00")
ULB_START = pd.Timestamp("2013-09-01 00:00")
PAYSIM_BANKS = 10  # PaySim has no banks: accounts are spread over this many by a stable hash
PAYSIM_FORMATS = {"CASH_IN": "Cash", "CASH_OUT": "Cash", "TRANSFER": "Wire",
                  "PAYMENT": "Credit Card", "DEBIT": "ACH"}  # fmt: skip
ULB_COMPONENTS = [f"V{i}" for i in range(1, 29)]
NORMALISED_COLUMNS = [
    "timestamp", "from_bank", "from_account", "to_bank", "to_account", "amount_received",
    "receiving_currency", "amount_paid", "payment_currency", "payment_format", "label",
]  # fmt: skip


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


_Check = Callable[[pd.Series], tuple[pd.Series, np.ndarray]]


def _check_timestamp(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    parsed = pd.to_datetime(values.str.strip(), format=TIMESTAMP_FORMAT, errors="coerce")
    return parsed, parsed.isna().to_numpy()


def _check_amount(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    parsed = pd.to_numeric(values.str.strip(), errors="coerce").astype("float64")
    ok = np.isfinite(parsed.to_numpy()) & (parsed.to_numpy() >= 0)
    return parsed, ~ok


def _check_number(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    parsed = pd.to_numeric(values.str.strip(), errors="coerce").astype("float64")
    return parsed, ~np.isfinite(parsed.to_numpy())


def _check_step(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    stripped = values.str.strip()
    ok = stripped.str.fullmatch(r"\d{1,9}").fillna(False).to_numpy(dtype=bool)
    return pd.Series(np.where(ok, stripped, "0")).astype(np.int64), ~ok


def _check_text(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    stripped = values.str.strip()
    return stripped, (stripped == "").to_numpy()


def _check_label(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    stripped = values.str.strip()
    ok = stripped.isin(["0", "1"]).to_numpy()
    return pd.Series(np.where(ok, stripped == "1", 0), dtype="int8"), ~ok


def _check_paysim_type(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    stripped = values.str.strip()
    return stripped, ~stripped.isin(list(PAYSIM_FORMATS)).to_numpy()


_EXPECT: dict[_Check, str] = {
    _check_timestamp: f"a timestamp like 2022/09/01 14:05 ({TIMESTAMP_FORMAT})",
    _check_amount: "a non-negative number",
    _check_number: "a number",
    _check_step: "a whole number of hours (0 or more)",
    _check_label: "0 or 1",
    _check_paysim_type: f"one of {', '.join(PAYSIM_FORMATS)}",
}


@dataclass(frozen=True)
class _Column:
    header: str
    occurrence: int  # IBM repeats "Account": 0 for the first, 1 for the second
    name: str  # name inside the chunk, before the format's own normalisation
    check: _Check


@dataclass(frozen=True)
class TransactionFormat:
    """A file format the node reads: its required header columns and how to normalise them."""

    name: str
    columns: tuple[_Column, ...]
    build: Callable[[dict[str, pd.Series], int], pd.DataFrame]  # (checked columns, first row)

    @property
    def headers(self) -> list[str]:
        return [c.header for c in self.columns]


def _cols(*spec: tuple[str, str, _Check]) -> tuple[_Column, ...]:
    seen: dict[str, int] = {}
    out = []
    for header, name, check in spec:
        out.append(_Column(header, seen.get(header, 0), name, check))
        seen[header] = seen.get(header, 0) + 1
    return tuple(out)


def _build_ibm(values: dict[str, pd.Series], first_row: int) -> pd.DataFrame:
    return pd.DataFrame({name: values[name] for name in NORMALISED_COLUMNS})


def _paysim_bank(names: pd.Series) -> np.ndarray:
    """A stable bank id ("1".."PAYSIM_BANKS") per account name (CRC-32, not Python's hash)."""
    codes, uniques = pd.factorize(names)
    banks = np.array([zlib.crc32(str(u).encode()) % PAYSIM_BANKS + 1 for u in uniques])
    return banks.astype(str)[codes] if len(uniques) else np.zeros(0, dtype=str)


def _build_paysim(values: dict[str, pd.Series], first_row: int) -> pd.DataFrame:
    amount = values["amount"]
    return pd.DataFrame({
        "timestamp": PAYSIM_START + pd.to_timedelta(values["step"], unit="h"),
        "from_bank": _paysim_bank(values["nameOrig"]), "from_account": values["nameOrig"],
        "to_bank": _paysim_bank(values["nameDest"]), "to_account": values["nameDest"],
        "amount_received": amount, "receiving_currency": "PaySim unit",
        "amount_paid": amount, "payment_currency": "PaySim unit",
        "payment_format": values["type"].map(PAYSIM_FORMATS), "label": values["isFraud"],
        "transaction_type": values["type"],  # PaySim's own type (CASH_OUT, TRANSFER, ...)
        "rule_flag": values["isFlaggedFraud"],  # PaySim's rule, kept apart from the label
    })  # fmt: skip


def _build_ulb(values: dict[str, pd.Series], first_row: int) -> pd.DataFrame:
    # No account ids: each row gets its own card and merchant, so account history is empty.
    row = pd.Series(np.arange(first_row, first_row + len(values["Time"]))).astype(str)
    frame = pd.DataFrame({
        "timestamp": ULB_START + pd.to_timedelta(values["Time"], unit="s").dt.floor("s"),
        "from_bank": "ulb", "from_account": "card-" + row, "to_bank": "ulb",
        "to_account": "merchant-" + row, "amount_received": values["Amount"],
        "receiving_currency": "Euro", "amount_paid": values["Amount"],
        "payment_currency": "Euro", "payment_format": "Credit Card", "label": values["Class"],
    })  # fmt: skip
    for name in ULB_COMPONENTS:
        frame[name.lower()] = values[name].to_numpy()
    return frame


IBM = TransactionFormat("IBM AML", _cols(
    ("Timestamp", "timestamp", _check_timestamp), ("From Bank", "from_bank", _check_text),
    ("Account", "from_account", _check_text), ("To Bank", "to_bank", _check_text),
    ("Account", "to_account", _check_text), ("Amount Received", "amount_received", _check_amount),
    ("Receiving Currency", "receiving_currency", _check_text),
    ("Amount Paid", "amount_paid", _check_amount),
    ("Payment Currency", "payment_currency", _check_text),
    ("Payment Format", "payment_format", _check_text), ("Is Laundering", "label", _check_label),
), _build_ibm)  # fmt: skip
PAYSIM = TransactionFormat("PaySim", _cols(
    ("step", "step", _check_step), ("type", "type", _check_paysim_type),
    ("amount", "amount", _check_amount), ("nameOrig", "nameOrig", _check_text),
    ("oldbalanceOrg", "oldbalanceOrg", _check_number),
    ("newbalanceOrig", "newbalanceOrig", _check_number), ("nameDest", "nameDest", _check_text),
    ("oldbalanceDest", "oldbalanceDest", _check_number),
    ("newbalanceDest", "newbalanceDest", _check_number), ("isFraud", "isFraud", _check_label),
    ("isFlaggedFraud", "isFlaggedFraud", _check_label),
), _build_paysim)  # fmt: skip
ULB = TransactionFormat("ULB creditcard", _cols(
    ("Time", "Time", _check_amount), *((v, v, _check_number) for v in ULB_COMPONENTS),
    ("Amount", "Amount", _check_amount), ("Class", "Class", _check_label),
), _build_ulb)  # fmt: skip
FORMATS = {"ibm": IBM, "paysim": PAYSIM, "ulb": ULB}


def load_transactions(path: Path | str, *, chunksize: int = 200_000) -> pd.DataFrame:
    """Load any known transaction file, recognised by its header (IBM AML, PaySim, ULB).

    Every format gives the `NORMALISED_COLUMNS`; PaySim adds ``transaction_type`` and
    ``rule_flag`` (its ``isFlaggedFraud`` rule, never the label), ULB adds ``v1``..``v28``.
    A header matching no format raises `DataError` listing the formats we know.
    """
    return _load(Path(path), detect_format(path), chunksize)


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
        known = "; ".join(f"{f.name} ({', '.join(dict.fromkeys(f.headers))})"
                          for f in FORMATS.values())  # fmt: skip
        raise DataError(path, 1, None, f"header matches no known format. Known formats: {known}")
    return FORMATS[best]


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


def _load(path: Path, fmt: TransactionFormat, chunksize: int) -> pd.DataFrame:
    header = _read_header(path)
    positions = _positions(path, header, fmt)
    parts = []
    line = 2  # line of the first data row; assumes one physical line per row, as all three write
    try:
        with warnings.catch_warnings():
            # A surplus field on the first data row only warns (pandas drops it); refuse it.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            reader = pd.read_csv(
                path, dtype=str, keep_default_na=False, skip_blank_lines=False,
                index_col=False, chunksize=chunksize, encoding="utf-8",
            )  # fmt: skip
            for chunk in reader:
                parts.append(_normalise(chunk.iloc[:, positions], fmt, positions, path, line))
                line += len(chunk)
    except pd.errors.ParserWarning:
        raise _surplus_on_first_row(path, len(header)) from None
    except pd.errors.ParserError as exc:
        raise _parser_error(path, exc) from None
    except UnicodeDecodeError as exc:
        raise DataError(path, None, None, f"not UTF-8 text ({exc.reason})") from None
    if not parts:
        empty = {c.name: pd.Series(dtype=str) for c in fmt.columns}
        return _normalise(pd.DataFrame(empty), fmt, positions, path, 2)
    return pd.concat(parts, ignore_index=True)


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
    expected = _EXPECT.get(column.check, "a non-empty value")
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

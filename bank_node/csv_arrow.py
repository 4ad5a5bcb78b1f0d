"""IBM AML CSVs read by pyarrow's C++ CSV reader into staged row tables, or refused as `NotFast`.

`bank_node.data` parses every cell with pandas and names the file, line and column of the
first bad one; that costs as much as computing the features. This reader is the fast path for
the well-formed IBM file a bank exports: pyarrow parses it in blocks (``block_bytes`` at a
time, bounded memory) and a few vectorised checks confirm that pandas would have read the
same values. Anything it cannot vouch for — a cell pyarrow refuses, a row with another number
of fields, a blank line, a value with surrounding blanks (pandas strips them), an empty text,
a timestamp not written ``YYYY/MM/DD HH:MM``, a negative or non-finite amount, a label other
than ``0``/``1`` — raises `NotFast`, and the caller reads the file with `bank_node.data`,
which gives the same values or the same `DataError`. So this path changes speed, never values
or messages.

Each table has the columns of `bank_node.staging.SCHEMA` (``rid``, ``source``, ``line``,
``tick``, ``secs``, ``day``, the text columns, the amounts, ``label``); the low-cardinality
text columns are dictionary-encoded (cast them to plain strings to write the staged schema).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from bank_node.data import _positions, _read_header, detect_format
from bank_node.schemas import IBM

# The header's columns in IBM order, as the staged schema names them.
_NAMES = [
    "timestamp", "from_bank", "from_account", "to_bank", "to_account", "amount_received",
    "receiving_currency", "amount_paid", "payment_currency", "payment_format", "label",
]  # fmt: skip
_WORDS = pa.dictionary(pa.int32(), pa.string())  # banks, currencies, formats, labels: few values
_TYPES = {
    "timestamp": pa.string(), "from_bank": _WORDS, "from_account": pa.string(),
    "to_bank": _WORDS, "to_account": pa.string(), "amount_received": pa.float64(),
    "receiving_currency": _WORDS, "amount_paid": pa.float64(), "payment_currency": _WORDS,
    "payment_format": _WORDS, "label": _WORDS,
}  # fmt: skip
# Python's str.strip() removes these; RE2's \s alone misses \v, \x1c-\x1f, \x85 and \p{Z}.
_BLANK = r"[\s\v\x1c-\x1f\x85\p{Z}]"
_STRIPPABLE = rf"^{_BLANK}|{_BLANK}$|^$"
_STAMP = r"^\d{4}/\d\d/\d\d \d\d:\d\d$"
_NS_PER_S = 1_000_000_000


class NotFast(Exception):
    """The file needs `bank_node.data`'s reader (its values or its error message)."""


def arrow_tables(
    path: Path, *, source: int, first_rid: int, block_bytes: int = 32 << 20
) -> Iterator[pa.Table]:
    """The rows of the IBM CSV ``path`` as staged tables, one per block of the file.

    Raises `NotFast` (possibly after yielding some tables) when the file is not an IBM file
    or holds anything `bank_node.data` must judge.
    """
    header = _read_header(path)
    if detect_format(path) is not IBM:
        raise NotFast(f"{path}: not an IBM AML file")
    positions = _positions(path, header, IBM)
    columns = [f"f{i}" for i in range(len(header))]
    rename = {columns[p]: name for p, name in zip(positions, _NAMES, strict=True)}
    reader = _open(path, columns, rename, block_bytes)
    line, rid = 2, first_rid
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowException, UnicodeDecodeError) as exc:
            raise NotFast(f"{path}: {exc}") from None
        table = pa.Table.from_batches([batch]).rename_columns(
            [rename[c] for c in batch.schema.names]
        )
        yield _staged(table, path, source=source, line=line, rid=rid)
        line, rid = line + len(table), rid + len(table)


def _open(
    path: Path, columns: list[str], rename: dict[str, str], block_bytes: int
) -> pacsv.CSVStreamingReader:
    try:
        return pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(
                skip_rows=1, column_names=columns, block_size=block_bytes, encoding="utf8"
            ),
            # A blank line or a quoted newline is a row pandas numbers differently: refuse.
            parse_options=pacsv.ParseOptions(newlines_in_values=False, ignore_empty_lines=False),
            convert_options=_convert_options(rename),
        )
    except (pa.ArrowException, UnicodeDecodeError) as exc:
        raise NotFast(f"{path}: {exc}") from None


def _convert_options(rename: dict[str, str]) -> pacsv.ConvertOptions:
    """Typed columns, and no cell read as null: an empty cell is for pandas to name."""
    return pacsv.ConvertOptions(
        column_types={c: _TYPES[name] for c, name in rename.items()},
        include_columns=list(rename),
        null_values=[],
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )


def _staged(table: pa.Table, path: Path, *, source: int, line: int, rid: int) -> pa.Table:
    """One parsed block checked as `bank_node.schemas` would, with the staged row identity."""
    stamps = table["timestamp"]
    if not _all(pc.match_substring_regex(stamps, _STAMP)):
        raise NotFast(f"{path}: a timestamp pandas must judge")
    try:
        seconds = pc.strptime(stamps, format="%Y/%m/%d %H:%M", unit="s")
    except pa.ArrowException as exc:
        raise NotFast(f"{path}: {exc}") from None
    # pyarrow rolls 2022/02/30 over to March 2nd where pandas refuses it: the day must stay.
    written_day = pc.utf8_slice_codeunits(stamps, 8, 10).cast(pa.int64())
    if not _all(pc.equal(pc.day(seconds), written_day)):
        raise NotFast(f"{path}: a day its month does not have")
    _check_text(table, path)
    for name in ("amount_paid", "amount_received"):
        amount = table[name]
        if not _all(pc.and_(pc.is_finite(amount), pc.greater_equal(amount, 0.0))):
            raise NotFast(f"{path}: an amount pandas must judge")
    rows = len(table)
    secs = seconds.cast(pa.int64())
    return pa.table({
        "rid": pa.array(np.arange(rid, rid + rows, dtype=np.int64)),
        "source": pa.array(np.full(rows, source, dtype=np.int32)),
        "line": pa.array(np.arange(line, line + rows, dtype=np.int64)),
        "tick": pc.multiply(secs, _NS_PER_S), "secs": secs, "day": seconds.cast(pa.date32()),
        **{name: table[name] for name in _NAMES[1:5]},
        "payment_currency": table["payment_currency"],
        "receiving_currency": table["receiving_currency"],
        "payment_format": table["payment_format"],
        "amount_paid": table["amount_paid"], "amount_received": table["amount_received"],
        "label": pc.equal(table["label"].cast(pa.string()), "1").cast(pa.int8()),
    })  # fmt: skip


def _check_text(table: pa.Table, path: Path) -> None:
    """Text cells pandas would strip or find empty, and labels other than 0 or 1."""
    for name in ("from_bank", "from_account", "to_bank", "to_account", "receiving_currency",
                 "payment_currency", "payment_format"):  # fmt: skip
        column = table[name]
        # A dictionary column's values are checked once, not once per row.
        values = column.combine_chunks().dictionary if column.type == _WORDS else column
        if _any(pc.match_substring_regex(values, _STRIPPABLE)):
            raise NotFast(f"{path}: a {name} cell pandas must strip or refuse")
    labels = table["label"].combine_chunks().dictionary
    if not _all(pc.is_in(labels, value_set=pa.array(["0", "1"]))):
        raise NotFast(f"{path}: a label other than 0 or 1")


def _all(flags: pa.Array | pa.ChunkedArray) -> bool:
    return bool(pc.all(flags).as_py() is not False)


def _any(flags: pa.Array | pa.ChunkedArray) -> bool:
    return bool(pc.any(flags).as_py())

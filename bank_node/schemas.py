"""The transaction file formats the node reads, and how each maps to one normalised frame.

Each format lists its required header columns, a check per column (text to typed values,
and which cells are malformed) and a builder to `NORMALISED_COLUMNS`, the IBM AML layout the
feature pipeline reads. `bank_node.data` recognises a file's format from its header and
reads it through these; nothing here touches a file.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

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


EXPECTED: dict[_Check, str] = {
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
    extra: tuple[str, ...] = ()  # the frame's columns beyond NORMALISED_COLUMNS

    @property
    def frame_columns(self) -> tuple[str, ...]:
        """Every column of the normalised frame this format gives (what feature sets read)."""
        return (*NORMALISED_COLUMNS, *self.extra)

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
), _build_paysim, ("transaction_type", "rule_flag"))  # fmt: skip
ULB = TransactionFormat("ULB creditcard", _cols(
    ("Time", "Time", _check_amount), *((v, v, _check_number) for v in ULB_COMPONENTS),
    ("Amount", "Amount", _check_amount), ("Class", "Class", _check_label),
), _build_ulb, tuple(v.lower() for v in ULB_COMPONENTS))  # fmt: skip
FORMATS = {"ibm": IBM, "paysim": PAYSIM, "ulb": ULB}
# What a node's ``data_format`` may say: a format's key, or "auto" (from the header).
DATA_FORMATS: tuple[str, ...] = ("auto", *FORMATS)

"""One member bank's CSV: which rows it sees, their IBM-format text, and its manifest counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv

from simulation.world.banks import Rows, World
from simulation.world.presets import (
    BENIGN_KINDS,
    CURRENCIES,
    EXTRA_HEADER,
    FIRST_EXTERNAL_BANK,
    FORMATS,
    IBM_HEADER,
    TYPOLOGIES,
    UNITS_PER_USD,
)


def visible_rows(w: World, rows: Rows) -> Rows:
    """The rows a member bank sees, between accounts open at the time (laundering aside)."""
    member = w.accounts.bank < w.n_members
    visible = member[rows.src] | member[rows.dst]  # nobody in the consortium sees the rest
    opened = np.zeros(w.accounts.size, np.int64)
    opened[: len(w.opened)] = w.opened  # accounts created later (mules) are open when used
    is_open = (rows.t >= opened[rows.src]) & (rows.t >= opened[rows.dst])
    return rows.take(np.flatnonzero(visible & (is_open | (rows.attempt >= 0))))


def bank_ids(w: World) -> np.ndarray:
    members = np.arange(1, w.n_members + 1)
    outside = FIRST_EXTERNAL_BANK + np.arange(w.n_banks - w.n_members)
    return np.concatenate([members, outside]).astype(str)


def _account_names(w: World, bank: np.ndarray, accounts: np.ndarray) -> pa.Array:
    """IBM-style account ids: "8", the bank id padded to 3 digits, then the index in hex.

    Made for the accounts of the rows being written only (each distinct one once): the
    account table of a large world grows as its windows are generated.
    """
    unique, where = np.unique(accounts, return_inverse=True)
    ids = np.char.zfill(bank_ids(w)[bank[unique]], 3)
    return pa.array(np.char.add("8", np.char.add(ids, _hex(unique)))).take(pa.array(where))


def bank_table(w: World, rows: Rows) -> pa.Table:
    """Format the rows as the CSV's text columns (IBM order, then the extras).

    Called once per bank file (per window and bank when chunked): text columns take far
    more memory than the numeric rows, so only one bank's worth of them exists at a time.
    Arrow's compute functions make the text: numpy's string functions and pandas' CSV
    writer took three times as long, for the same bytes.
    """
    bank = w.accounts.bank
    ids = pa.array(bank_ids(w))
    btc = rows.fmt == FORMATS.index("Bitcoin")
    per_usd = np.array([UNITS_PER_USD[c] for c in CURRENCIES])
    pay_cur = np.where(btc, CURRENCIES.index("Bitcoin"), w.currency[bank[rows.src]])
    recv_cur = np.where(btc, CURRENCIES.index("Bitcoin"), w.currency[bank[rows.dst]])
    decimals = np.where(btc, 6, 2)
    paid = _round(rows.usd * per_usd[pay_cur], decimals)
    received = _round(paid * per_usd[recv_cur] / per_usd[pay_cur], decimals)
    label = rows.attempt >= 0
    columns = [
        _stamps(w, rows.t),
        ids.take(pa.array(bank[rows.src])), _account_names(w, bank, rows.src),
        ids.take(pa.array(bank[rows.dst])), _account_names(w, bank, rows.dst),
        _fmt_amount(received, btc), _names(CURRENCIES, recv_cur),
        _fmt_amount(paid, btc), _names(CURRENCIES, pay_cur),
        _names(FORMATS, rows.fmt), pa.array(label.astype(np.int64)),
        _attempt_ids(rows.attempt, label),
        pc.if_else(pa.array(label), _names(TYPOLOGIES, np.maximum(rows.typology, 0)), ""),
        _names(BENIGN_KINDS + TYPOLOGIES, rows.kind),
    ]  # fmt: skip
    return pa.Table.from_arrays(columns, names=[f"c{i}" for i in range(len(columns))])


def _stamps(w: World, t: np.ndarray) -> pa.Array:
    """Minutes as ``YYYY/MM/DD hh:mm``: each minute of the span formatted once, then looked up."""
    first = int(t.min(initial=0))
    span = w.start.astype("datetime64[m]") + np.arange(first, int(t.max(initial=0)) + 1)
    text = pc.strftime(pa.array(span.astype("datetime64[s]")), format="%Y/%m/%d %H:%M")
    return text.take(pa.array(t - first))


def _names(names: list[str], index: np.ndarray) -> pa.Array:
    return pa.array(names).take(pa.array(index))


def _attempt_ids(attempt: np.ndarray, label: np.ndarray) -> pa.Array:
    text = pc.utf8_lpad(pc.cast(pa.array(attempt + 1), pa.string()), width=6, padding="0")
    return pc.if_else(pa.array(label), pc.binary_join_element_wise("A", text, ""), "")


def _hex(values: np.ndarray) -> np.ndarray:
    return np.array([f"{v:05X}" for v in values.tolist()])


def _round(x: np.ndarray, decimals: np.ndarray) -> np.ndarray:
    scale = 10.0**decimals
    return np.maximum(np.round(x * scale), 1) / scale  # never a zero amount


def _fmt_amount(x: np.ndarray, btc: np.ndarray) -> pa.Array:
    """``%.2f``, or ``%.6f`` for bitcoin (small amounts: keep satoshi-ish precision).

    ``x`` holds whole cents (micro-bitcoins) divided by 100 (1e6), so the digits are those
    of the integer: whole part, a point, then the remainder padded with zeros.
    """
    scale = np.where(btc, 10**6, 100)
    units = np.round(x * scale).astype(np.int64)
    whole = pc.cast(pa.array(units // scale), pa.string())
    rest = pc.cast(pa.array(units % scale), pa.string())
    rest = pc.if_else(pa.array(btc), pc.utf8_lpad(rest, width=6, padding="0"),
                      pc.utf8_lpad(rest, width=2, padding="0"))  # fmt: skip
    return pc.binary_join_element_wise(whole, rest, ".")


def bank_info(w: World, index: int) -> dict[str, Any]:
    """What the manifest says of a member bank before counting its rows."""
    return {
        "file": f"bank_{bank_ids(w)[index]}.csv",
        "segment": w.segment[index],
        "currency": CURRENCIES[w.currency[index]],
        "rate_factor": round(float(w.rate_factor[index]), 6),
        "train_mix": {t: round(float(w.mix[index, k]), 6) for k, t in enumerate(TYPOLOGIES)},
        "train_typologies": [t for k, t in enumerate(TYPOLOGIES) if w.allowed[index, k]],
    }


def bank_counts(w: World, rows: Rows, mine: np.ndarray) -> dict[str, Any]:
    """The manifest's row counts of one bank's file, for ``rows`` where ``mine`` is true."""
    typology, in_train = rows.typology[mine], rows.t[mine] < w.train_end

    def count(part: np.ndarray) -> dict[str, int]:
        return {t: int(((typology == k) & part).sum()) for k, t in enumerate(TYPOLOGIES)}

    return {
        "rows": int(mine.sum()),
        "laundering_rows": int((typology >= 0).sum()),
        "typology_rows": count(np.ones_like(in_train)),
        "typology_rows_train": count(in_train),
        "typology_rows_holdout": count(~in_train),
    }


def write_bank_file(path: Path, table: pa.Table, *, append: bool) -> None:
    """Write (or append, without the header) one bank's rows in the IBM column order.

    No value holds a comma, a quote or a line break, so none is quoted (as pandas wrote them).
    """
    with path.open("ab" if append else "wb") as out:
        if not append:
            out.write((",".join(IBM_HEADER + EXTRA_HEADER) + "\n").encode())
        options = csv.WriteOptions(include_header=False, quoting_style="none")
        csv.write_csv(table, out, options)

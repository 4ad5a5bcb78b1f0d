"""What `bank-node serve` reads and computes for each feature set a model may name.

Each entry pairs the fields a request's transaction carries (`RequestFields`) with how its
raw feature row is made: the account-history rows of ``bank_node.online_features`` for the
sets that read history, then the set's own columns, computed by the very functions batch
scoring calls (``models.feature_sets``, ``models.features``) on a frame of the request's
transactions, so that a transaction scored online and in a file gets the same row.

``aml-v1``     history fields; history features only.
``paysim-v1``  history fields plus PaySim's ``transaction_type`` (one of its five types,
               consistent with ``payment_format``) and ``rule_flag`` (0 or 1).
``card-v1``    ``timestamp``, ``amount_paid`` and ``v1``..``v28`` (ULB's components); no
               account history is read or written.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bank_node.schemas import PAYSIM_FORMATS
from bank_node.serve_input import (
    HISTORY_FIELDS,
    Checker,
    InputError,
    RequestFields,
    ScoreRequest,
    amount,
    bad,
    choice,
)
from models.feature_sets import PAYSIM_TYPES, paysim_extra_columns
from models.features import CARD_COMPONENTS, compute_card_features


@dataclass(frozen=True)
class ServedSet:
    """One feature set as the service serves it: request fields and the columns it appends.

    ``own_columns`` turns the checked own values of a request's transactions (request order)
    into the columns that follow the history features (or all columns, without history).
    """

    name: str
    fields: RequestFields
    own_columns: Callable[[list[dict[str, Any]]], np.ndarray] | None = None

    def features(self, history: np.ndarray | None, values: list[dict[str, Any]]) -> np.ndarray:
        """The raw feature rows: history rows (if read) then the set's own columns."""
        parts = [] if history is None else [history]
        if self.own_columns is not None:
            parts.append(self.own_columns(values))
        return np.column_stack(parts).astype(np.float32) if len(parts) > 1 else parts[0]


def _number(value: Any, field: str, index: int, prefix: str) -> float:
    """Any finite number (a card component may be negative)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(field, index, prefix, "a finite number", value)
    number = float(value)
    if not math.isfinite(number):
        raise bad(field, index, prefix, "a finite number", value)
    return number


def _flag(value: Any, field: str, index: int, prefix: str) -> int:
    """0 or 1 (true/false taken too): PaySim's ``isFlaggedFraud``."""
    if value in (0, 1) and not isinstance(value, float):
        return int(value)
    raise bad(field, index, prefix, "0 or 1", value)


def _paysim_type(value: Any, field: str, index: int, prefix: str) -> str:
    return choice(value, field, frozenset(PAYSIM_TYPES), index, prefix)


def _paysim_columns(values: list[dict[str, Any]]) -> np.ndarray:
    frame = pd.DataFrame(
        {
            "transaction_type": [v["transaction_type"] for v in values],
            "rule_flag": [v["rule_flag"] for v in values],
        }
    )
    return paysim_extra_columns(frame)


def _card_columns(values: list[dict[str, Any]]) -> np.ndarray:
    columns: dict[str, Any] = {
        "timestamp": np.array([v["timestamp"] for v in values], dtype="datetime64[s]"),
        "amount_paid": np.array([v["amount_paid"] for v in values], dtype=np.float64),
    }
    for name in CARD_COMPONENTS:
        columns[name] = np.array([v[name] for v in values], dtype=np.float64)
    return compute_card_features(pd.DataFrame(columns))


PAYSIM_OWN: tuple[tuple[str, Checker], ...] = (
    ("transaction_type", _paysim_type),
    ("rule_flag", _flag),
)
CARD_OWN: tuple[tuple[str, Checker], ...] = (
    ("amount_paid", amount),
    *((name, _number) for name in CARD_COMPONENTS),
)

SERVED_SETS: dict[str, ServedSet] = {
    "aml-v1": ServedSet("aml-v1", HISTORY_FIELDS),
    "paysim-v1": ServedSet("paysim-v1", RequestFields(own=PAYSIM_OWN), _paysim_columns),
    "card-v1": ServedSet("card-v1", RequestFields(history=False, own=CARD_OWN), _card_columns),
}


def check_consistent(served: ServedSet, request: ScoreRequest) -> None:
    """A 422 naming the first PaySim transaction whose ``payment_format`` contradicts its type.

    The PaySim loader derives the format from the type; a request carrying both must say
    what the file would have said, or its row would be one that training never saw.
    """
    if served.name != "paysim-v1":
        return
    for i, (tx, values) in enumerate(zip(request.transactions, request.values, strict=True)):
        kind = values["transaction_type"]
        if tx.payment_format != PAYSIM_FORMATS[kind]:
            prefix = f"transactions[{i}]." if request.batch else ""
            raise InputError(
                422,
                "invalid",
                f"{prefix}payment_format: {tx.payment_format!r} does not match "
                f"transaction_type {kind!r}, whose format is {PAYSIM_FORMATS[kind]!r}",
                field=prefix + "payment_format",
                index=i,
            )

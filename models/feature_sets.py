"""The registry of feature sets a policy may name: columns each needs, its names, its function.

A policy's ``feature_set`` picks one entry; its ``n_features`` must equal that entry's
width. Every bank computes the same set from its own normalised frame
(``bank_node.data``), so the columns a set needs say which file formats can join:

``aml-v1``     the account-history features of `models.features` (`FEATURE_NAMES`); any
               format (IBM AML, PaySim, ULB: ULB has no account history, so those read
               "first time seen").
``card-v1``    ULB's PCA components, log amount and time of day (`CARD_FEATURE_NAMES`);
               needs ``v1``..``v28``, which only the ULB creditcard format has.
``paysim-v1``  ``aml-v1`` plus PaySim's own transaction type (one-hot) and its rule flag
               (``isFlaggedFraud``, never the label); needs those two PaySim columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.features import (
    CARD_COMPONENTS,
    CARD_FEATURE_NAMES,
    FEATURE_NAMES,
    REQUIRED_COLUMNS,
    compute_card_features,
    compute_features,
)

DEFAULT_FEATURE_SET = "aml-v1"
# PaySim's own types, in a fixed order (bank_node.schemas.PAYSIM_FORMATS holds the same).
PAYSIM_TYPES = ["CASH_IN", "CASH_OUT", "TRANSFER", "PAYMENT", "DEBIT"]
PAYSIM_EXTRA_NAMES: list[str] = [*(f"type_{t.lower()}" for t in PAYSIM_TYPES), "rule_flag"]


@dataclass(frozen=True)
class FeatureSet:
    """One named feature set: the frame columns it reads, its feature names, its function."""

    name: str
    columns: tuple[str, ...]
    feature_names: tuple[str, ...]
    compute: Callable[[pd.DataFrame], np.ndarray]
    description: str

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def missing(self, columns: Iterable[str]) -> list[str]:
        """The columns this set needs that ``columns`` lacks, in this set's order."""
        have = set(columns)
        return [c for c in self.columns if c not in have]


def paysim_extra_columns(df: pd.DataFrame) -> np.ndarray:
    """PaySim's own columns as features: its transaction type (one-hot) and its rule flag.

    The type tells CASH_IN from CASH_OUT, which the normalised ``payment_format`` merges
    ("Cash"); fraud in PaySim happens only in TRANSFER and CASH_OUT. The rule flag is
    PaySim's ``isFlaggedFraud`` (a fixed amount rule), a column a bank would have too.
    ``bank-node serve`` calls this on the transactions of a request, batch scoring on the
    whole file: one function, so the two agree.
    """
    missing = [c for c in ("transaction_type", "rule_flag") if c not in df.columns]
    if missing:
        raise ValueError(f"compute_paysim_features needs columns {missing} (see load_paysim_csv)")
    kinds = df["transaction_type"].astype(str).to_numpy()
    extra = [kinds == t for t in PAYSIM_TYPES]
    extra.append(df["rule_flag"].to_numpy(dtype=np.float64) > 0)
    return np.column_stack([np.asarray(e, np.float32) for e in extra]).reshape(len(df), len(extra))


def compute_paysim_features(df: pd.DataFrame) -> np.ndarray:
    """`compute_features` plus PaySim's transaction type and rule flag (`paysim_extra_columns`)."""
    extra = paysim_extra_columns(df)
    matrix = np.column_stack([compute_features(df), extra])
    return matrix.astype(np.float32).reshape(len(df), len(FEATURE_NAMES) + extra.shape[1])


FEATURE_SETS: dict[str, FeatureSet] = {
    s.name: s
    for s in (
        FeatureSet(
            "aml-v1",
            (*REQUIRED_COLUMNS,),
            (*FEATURE_NAMES,),
            compute_features,
            "account-history features (any format)",
        ),
        FeatureSet(
            "card-v1",
            (*CARD_COMPONENTS, "timestamp", "amount_paid"),
            (*CARD_FEATURE_NAMES,),
            compute_card_features,
            "card PCA components, amount, time of day (ULB creditcard)",
        ),
        FeatureSet(
            "paysim-v1",
            (*REQUIRED_COLUMNS, "transaction_type", "rule_flag"),
            (*FEATURE_NAMES, *PAYSIM_EXTRA_NAMES),
            compute_paysim_features,
            "account-history features plus PaySim's type and rule flag (PaySim)",
        ),
    )
}


def feature_set(name: str) -> FeatureSet:
    """The registered set ``name``; a ValueError lists the known ones."""
    try:
        return FEATURE_SETS[name]
    except KeyError:
        known = ", ".join(FEATURE_SETS)
        raise ValueError(f"unknown feature set {name!r}; known: {known}") from None

"""Small bank files in the PaySim and ULB creditcard formats, for tests and demos.

`paysim_files` rewrites a generated world's IBM files in PaySim's columns (accounts,
amounts, hours and labels kept; no balances); `ulb_files` draws ULB-like card rows with a
signal in a few PCA components. Neither is a real data set: they exercise the loaders and
the feature sets end to end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bank_node.schemas import PAYSIM_START, ULB_COMPONENTS
from simulation.world import generate_world

# How a generated IBM file reads as PaySim: payment formats to PaySim's transaction types.
PAYSIM_TYPES = {"Cash": "CASH_OUT", "Wire": "TRANSFER", "Credit Card": "PAYMENT", "ACH": "DEBIT",
                "Cheque": "DEBIT", "Bitcoin": "TRANSFER", "Reinvestment": "CASH_IN"}  # fmt: skip


def as_paysim(ibm: pd.DataFrame) -> pd.DataFrame:
    """One generated bank's rows in PaySim's columns (whole hours from PaySim's start)."""
    stamps = pd.to_datetime(ibm["Timestamp"], format="%Y/%m/%d %H:%M")
    zero = "0.0"  # the generator keeps no balances; the loader reads them, features do not
    big = pd.to_numeric(ibm["Amount Paid"]) >= 200_000  # PaySim's own rule flags large transfers
    return pd.DataFrame({
        "step": ((stamps - PAYSIM_START) // pd.Timedelta(hours=1)).astype(int),
        "type": ibm["Payment Format"].map(PAYSIM_TYPES), "amount": ibm["Amount Paid"],
        "nameOrig": ibm["Account"], "oldbalanceOrg": zero, "newbalanceOrig": zero,
        "nameDest": ibm["Account.1"], "oldbalanceDest": zero, "newbalanceDest": zero,
        "isFraud": ibm["Is Laundering"], "isFlaggedFraud": big.astype(int).astype(str),
    })  # fmt: skip


def paysim_files(out: Path, *, n_banks: int = 3, seed: int = 5) -> list[Path]:
    """A tiny generated world, one PaySim CSV per bank (``wallet_<k>.csv``), in bank order."""
    world = out / "ibm-world"
    generate_world(world, n_banks=n_banks, preset="tiny", seed=seed)
    paths = []
    for path in sorted(world.glob("bank_*.csv")):
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        target = out / path.name.replace("bank_", "wallet_")
        as_paysim(frame).to_csv(target, index=False)
        paths.append(target)
    return paths


def ulb_frame(rows: int, *, seed: int, fraud_rate: float = 0.03, days: int = 4) -> pd.DataFrame:
    """ULB-like card rows: 28 components, a signal in V1..V4 and the amount for fraud."""
    rng = np.random.default_rng(seed)
    label = rng.random(rows) < fraud_rate
    components = rng.normal(0.0, 1.0, (rows, len(ULB_COMPONENTS)))
    components[label, :4] += np.array([-3.0, 2.5, -2.5, 2.0])  # as ULB's V1..V4 separate fraud
    amount = np.round(np.exp(rng.normal(3.5, 1.2, rows)) + label * 150, 2)
    seconds = np.sort(rng.uniform(0, days * 86_400, rows)).round(1)
    frame = pd.DataFrame(components.round(6), columns=ULB_COMPONENTS)
    frame.insert(0, "Time", seconds)
    frame["Amount"] = amount
    frame["Class"] = label.astype(int)
    return frame


def ulb_files(out: Path, *, n_banks: int = 3, rows: int = 1500, seed: int = 5) -> list[Path]:
    """One ULB creditcard CSV per bank (``cards_<k>.csv``), each its own draw."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(1, n_banks + 1):
        path = out / f"cards_{k}.csv"
        ulb_frame(rows, seed=seed * 100 + k).to_csv(path, index=False)
        paths.append(path)
    return paths

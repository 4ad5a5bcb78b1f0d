"""One bank's file as the quality benchmark reads it: the node's split and features, typologies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bank_node.config import Evaluation
from bank_node.data import load_transactions
from bank_node.splits import split_frame
from bank_node.training import LocalData, check_test_positives
from models.features import compute_features
from simulation.datadir import TYPOLOGY_COLUMN, BankFile, has_column


@dataclass
class Bank:
    """One member bank's data as its node sees it, plus the held-out rows' typologies."""

    bank_id: str
    slug: str  # its name at the portal and its directory in the encrypted run
    data: LocalData
    test_typology: np.ndarray  # "" for every row when the file has no Typology column
    rows: int


def load_bank(file: BankFile, evaluation: Evaluation) -> Bank:
    """Same steps as `bank_node.training.local_data`, keeping the test rows' typology.

    The file may be in any format `bank_node.data` reads (recognised from its header); a
    file it cannot read raises `bank_node.data.DataError` naming the file and the column.
    """
    frame = load_transactions(file.path)
    parts = split_frame(frame, evaluation, file.path)
    features = compute_features(frame)
    labels = frame["label"].to_numpy(dtype=np.float32)
    tr, va, te = (frame.index.get_indexer(p.index) for p in parts)
    data = LocalData(features[tr], labels[tr], features[va], labels[va], features[te], labels[te])
    check_test_positives(data, evaluation, file.path)
    typology = np.full(len(frame), "", dtype=object)
    if has_column(file.path, TYPOLOGY_COLUMN):
        read = pd.read_csv(file.path, usecols=[TYPOLOGY_COLUMN], dtype=str, keep_default_na=False)
        typology = read[TYPOLOGY_COLUMN].to_numpy()
    return Bank(file.bank_id, file.slug, data, typology[te], len(frame))

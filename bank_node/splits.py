"""The bank's evaluation split: 60/20/20 of the time span, or by the dates in ``[evaluation]``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from bank_node.config import ConfigError, Evaluation
from bank_node.data import chronological_split

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)


def date_split(
    df: pd.DataFrame,
    train_before: pd.Timestamp,
    evaluate_from: pd.Timestamp,
    validation_fraction: float = 0.25,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split a normalised frame by dates a bank chose: (train, validation, test).

    Rows before ``train_before`` are cut by time into train and, for the last
    ``validation_fraction`` of their span, validation; rows at or after ``evaluate_from``
    are the test period; rows in between (a gap left for late labels) are in none.
    """
    if evaluate_from < train_before:
        raise ValueError(f"evaluate_from {evaluate_from} is before train_before {train_before}")
    ordered = df.iloc[np.argsort(df["timestamp"].to_numpy(), kind="stable")]
    stamps = ordered["timestamp"]
    before = ordered[(stamps < train_before).to_numpy()]
    train, val = chronological_split(before, (1 - validation_fraction, validation_fraction))
    return train, val, ordered[(stamps >= evaluate_from).to_numpy()]


def split_frame(
    df: pd.DataFrame, evaluation: Evaluation, source: Path | str
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, validation, test) as the node's ``[evaluation]`` asks.

    A date split that leaves the training or test period empty raises `ConfigError`
    naming the field, the data file and the file's first and last transaction.
    """
    if evaluation.train_before is None or evaluation.evaluate_from is None:
        train, val, test = chronological_split(df, DEFAULT_FRACTIONS)
        return train, val, test
    before = pd.Timestamp(evaluation.train_before)
    start = pd.Timestamp(evaluation.evaluate_from)
    parts = date_split(df, before, start, evaluation.validation_fraction)
    checks = ((parts[0], "train_before", before), (parts[2], "evaluate_from", start))
    for part, field, date in checks:
        if len(part) == 0:
            raise ConfigError(_empty_period(df, field, date, source))
    return parts


def _empty_period(df: pd.DataFrame, field: str, date: pd.Timestamp, source: Path | str) -> str:
    span = (
        f"its transactions run from {df['timestamp'].min():%Y-%m-%d} to "
        f"{df['timestamp'].max():%Y-%m-%d}"
        if len(df)
        else "it has no transactions"
    )
    period = "training" if field == "train_before" else "test"
    return (
        f"evaluation.{field} = {date:%Y-%m-%d} leaves no rows in the {period} period of "
        f"{source} ({span}); choose a date inside that span"
    )


def low_positive_warning(positives: int, evaluation: Evaluation, source: Path | str) -> str | None:
    """The warning a bank gets when its test period holds too few positives, or None."""
    if positives >= evaluation.min_test_positives:
        return None
    fix = (
        "move [evaluation] evaluate_from earlier in node.toml"
        if evaluation.by_date
        else 'set [evaluation] train_before and evaluate_from in node.toml (e.g. "2024-03-21") '
        "so that the test period is longer"
    )
    return (
        f"the test period of {source} holds only {positives} positive transaction(s), "
        f"fewer than {evaluation.min_test_positives}: AUPRC, recall and F1 on it are "
        f"unreliable. To fix it, {fix}, or add data; split: {evaluation.describe()}"
    )

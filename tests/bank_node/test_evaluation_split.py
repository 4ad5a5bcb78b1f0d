"""The [evaluation] split a bank sets in node.toml: dates, their errors, the low-positive warning."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bank_node import metrics as node_metrics
from bank_node.config import ConfigError, Evaluation, load_config
from bank_node.splits import date_split, low_positive_warning, split_frame
from bank_node.training import check_test_positives, local_data

REST = (
    'portal_url = "https://portal.example"\nbank = "alpha"\ncredential_file = "credential"\n'
    'signing_key_file = "signing.key"\nsecret_context_file = "consortium.secret"\n'
    'ckks_params_file = "ckks_params.json"\ndata_file = "data.csv"\nstate_dir = "state"\n'
)
HEADER = (
    "Timestamp,From Bank,Account,To Bank,Account,Amount Received,Receiving Currency,"
    "Amount Paid,Payment Currency,Payment Format,Is Laundering"
)


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """These tests touch no Django (stands in for the repo-wide fixture of that name)."""


def _node_toml(tmp_path: Path, evaluation: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f"{REST}\n[evaluation]\n{evaluation}\n")
    return path


def _frame(days: int = 10, per_day: int = 4) -> pd.DataFrame:
    stamps = pd.date_range("2024-03-01", periods=days * per_day, freq=f"{24 // per_day}h")
    return pd.DataFrame({"timestamp": stamps, "label": np.arange(len(stamps)) % 2})


def _csv(tmp_path: Path, days: int, positives_every: int) -> Path:
    rows = []
    for i in range(days * 24):
        stamp = pd.Timestamp("2024-03-01") + pd.Timedelta(hours=i)
        label = int(i % positives_every == 0)
        rows.append(
            f"{stamp:%Y/%m/%d %H:%M},1,A{i % 7},2,B{i % 5},{10 + i % 90}.5,US Dollar,"
            f"{10 + i % 90}.5,US Dollar,ACH,{label}"
        )
    path = tmp_path / f"bank-{days}-{positives_every}.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def test_without_an_evaluation_table_the_split_is_60_20_20_of_time(tmp_path: Path):
    (tmp_path / "node.toml").write_text(REST)
    config = load_config(tmp_path / "node.toml")
    assert config.evaluation == Evaluation()
    train, val, test = split_frame(_frame(), config.evaluation, "data.csv")
    assert (len(train), len(val), len(test)) == (24, 8, 8)


@pytest.mark.parametrize("line", ['train_before = "2024-03-21"', "train_before = 2024-03-21"])
def test_train_before_reads_as_a_string_or_a_toml_date_and_evaluate_from_defaults_to_it(
    tmp_path: Path, line: str
):
    evaluation = load_config(_node_toml(tmp_path, line)).evaluation
    assert evaluation.train_before == evaluation.evaluate_from == date(2024, 3, 21)


@pytest.mark.parametrize("value", ['"21/03/2024"', '"2024-13-01"', '"soon"', "20240321"])
def test_an_unparsable_date_is_refused_naming_the_file_and_the_field(tmp_path: Path, value: str):
    path = _node_toml(tmp_path, f"train_before = {value}")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert "evaluation.train_before must be a date like" in str(caught.value)


def test_evaluate_from_before_train_before_is_refused_naming_both_fields(tmp_path: Path):
    path = _node_toml(tmp_path, 'train_before = "2024-03-21"\nevaluate_from = "2024-03-20"')
    with pytest.raises(ConfigError, match=r"node\.toml: evaluation\.evaluate_from \(2024-03-20\) "
                       r"is before evaluation\.train_before"):  # fmt: skip
        load_config(path)


def test_evaluate_from_alone_is_refused_saying_to_set_train_before(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"evaluate_from is set without evaluation\.train_before"):
        load_config(_node_toml(tmp_path, 'evaluate_from = "2024-03-21"'))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("validation_fraction = 1.5", "validation_fraction must lie strictly between 0 and 1"),
        ("test_from = 2024-03-21", r"unknown field\(s\) in \[evaluation\]: test_from"),
    ],
)
def test_other_bad_evaluation_fields_are_refused(tmp_path: Path, line: str, message: str):
    with pytest.raises(ConfigError, match=message):
        load_config(_node_toml(tmp_path, line))


def test_a_date_split_puts_rows_before_train_before_in_training_and_from_evaluate_from_in_test():
    frame = _frame(days=10, per_day=4)  # 2024-03-01 .. 03-10, every 6 hours
    train, val, test = date_split(
        frame, pd.Timestamp("2024-03-06"), pd.Timestamp("2024-03-08"), validation_fraction=0.25
    )
    assert train["timestamp"].max() < val["timestamp"].min()
    assert val["timestamp"].max() < pd.Timestamp("2024-03-06")
    assert test["timestamp"].min() == pd.Timestamp("2024-03-08")
    # 5 days before the cut: 20 rows, the last quarter of their span validates;
    # the gap (03-06 and 03-07) is in no split.
    assert (len(train), len(val), len(test)) == (15, 5, 12)
    assert len(train) + len(val) + len(test) == len(frame) - 8


def test_a_date_after_the_last_transaction_is_refused_naming_the_field_and_the_span():
    evaluation = Evaluation(train_before=date(2024, 3, 5), evaluate_from=date(2024, 4, 1))
    with pytest.raises(ConfigError, match=r"evaluation\.evaluate_from = 2024-04-01 leaves no rows "
                       r"in the test period of data\.csv \(its transactions run from 2024-03-01 "
                       r"to 2024-03-10\)"):  # fmt: skip
        split_frame(_frame(), evaluation, "data.csv")


def test_the_node_splits_its_file_by_the_configured_dates(tmp_path: Path):
    path = _csv(tmp_path, days=20, positives_every=5)
    evaluation = Evaluation(train_before=date(2024, 3, 15), evaluate_from=date(2024, 3, 16))
    data = local_data(path, evaluation)
    assert data.x_train.shape[0] + data.x_val.shape[0] == 14 * 24
    assert data.x_test.shape[0] == 5 * 24
    assert data.x_val.shape[0] == pytest.approx(0.25 * 14 * 24, abs=1)


def test_too_few_test_positives_are_warned_in_the_log_and_the_metric_with_the_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    path = _csv(tmp_path, days=20, positives_every=97)  # ~1 positive a day: 5 in the test period
    with caplog.at_level(logging.WARNING):
        data = local_data(path, Evaluation(train_before=date(2024, 3, 16)))
    positives = int(data.y_test.sum())
    assert 0 < positives < 20
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert f"holds only {positives} positive transaction(s), fewer than 20" in warning
    assert "move [evaluation] evaluate_from earlier in node.toml" in warning
    assert node_metrics.TEST_POSITIVES._value.get() == positives
    assert node_metrics.TEST_POSITIVES_LOW._value.get() == 1


def test_enough_test_positives_raise_no_warning_and_clear_the_metric(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    data = local_data(_csv(tmp_path, days=20, positives_every=3))
    with caplog.at_level(logging.WARNING):
        low = check_test_positives(data, Evaluation(), "data.csv")
    assert low is False
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert node_metrics.TEST_POSITIVES_LOW._value.get() == 0


def test_the_default_split_names_the_evaluation_dates_as_the_fix():
    warning = low_positive_warning(3, Evaluation(min_test_positives=50), "bank.csv")
    assert warning is not None and "set [evaluation] train_before and evaluate_from" in warning

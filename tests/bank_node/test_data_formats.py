"""PaySim and ULB loaders, and recognising a file's format from its header."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bank_node.data import (
    DataError,
    check_header,
    detect_format,
    load_paysim_csv,
    load_transactions,
    load_ulb_csv,
)
from bank_node.schemas import PAYSIM_START
from models.features import (
    CARD_FEATURE_NAMES,
    FEATURE_NAMES,
    compute_card_features,
    compute_features,
)

PAYSIM_HEADER = (
    "step,type,amount,nameOrig,oldbalanceOrg,newbalanceOrig,nameDest,oldbalanceDest,"
    "newbalanceDest,isFraud,isFlaggedFraud"
)
PAYSIM_ROWS = [
    "1,PAYMENT,9839.64,C1231006815,170136.0,160296.36,M1979787155,0.0,0.0,0,0",
    "1,TRANSFER,181.0,C1305486145,181.0,0.0,C553264065,0.0,0.0,1,0",
    "3,CASH_OUT,181.0,C840083671,181.0,0.0,C38997010,21182.0,0.0,1,1",
    "5,CASH_IN,500.5,C1305486145,0.0,500.5,C553264065,10.0,0.0,0,0",
]
ULB_HEADER = '"Time",' + ",".join(f'"V{i}"' for i in range(1, 29)) + ',"Amount","Class"'


def ulb_row(time: str, amount: str = "149.62", label: str = '"0"', v1: str = "-1.36") -> str:
    return ",".join([time, v1, *(f"{0.01 * i:.2f}" for i in range(2, 29)), amount, label])


ULB_ROWS = [ulb_row("0"), ulb_row("406", label='"1"'), ulb_row("90061.5", amount="2.69")]


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """Stand in for the repo-wide autouse fixture of that name, which needs pytest-django's
    ``settings``; these tests touch no Django and also run with ``-p no:django``."""


def write(tmp_path: Path, header: str, rows: list[str], name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_a_paysim_file_maps_to_the_normalised_frame_with_hours_as_time(tmp_path: Path) -> None:
    frame = load_paysim_csv(write(tmp_path, PAYSIM_HEADER, PAYSIM_ROWS))
    assert frame["timestamp"].tolist() == [
        PAYSIM_START + pd.Timedelta(hours=h) for h in (1, 1, 3, 5)
    ]
    assert frame["payment_format"].tolist() == ["Credit Card", "Wire", "Cash", "Cash"]
    assert frame["transaction_type"].tolist() == ["PAYMENT", "TRANSFER", "CASH_OUT", "CASH_IN"]
    assert (frame["amount_paid"] == frame["amount_received"]).all()
    assert frame["label"].tolist() == [0, 1, 1, 0] and frame["label"].dtype == np.int8


def test_paysims_rule_flag_is_kept_apart_and_never_becomes_the_label(tmp_path: Path) -> None:
    frame = load_paysim_csv(write(tmp_path, PAYSIM_HEADER, PAYSIM_ROWS))
    assert frame["rule_flag"].tolist() == [0, 0, 1, 0]
    assert frame["label"].tolist() != frame["rule_flag"].tolist()


def test_paysim_accounts_always_land_at_the_same_bank(tmp_path: Path) -> None:
    frame = load_paysim_csv(write(tmp_path, PAYSIM_HEADER, PAYSIM_ROWS))
    again = load_paysim_csv(write(tmp_path, PAYSIM_HEADER, PAYSIM_ROWS[::-1], "reversed.csv"))
    bank_of = dict(zip(frame["from_account"], frame["from_bank"], strict=True))
    bank_of |= dict(zip(frame["to_account"], frame["to_bank"], strict=True))
    assert all(
        bank_of[a] == b for a, b in zip(again["from_account"], again["from_bank"], strict=True)
    )
    assert bank_of["C1305486145"] == "10"  # zlib.crc32(b"C1305486145") % 10 + 1: fixed forever
    assert set(bank_of.values()) <= {str(b) for b in range(1, 11)}


def test_paysim_rows_get_the_account_history_features(tmp_path: Path) -> None:
    frame = load_paysim_csv(write(tmp_path, PAYSIM_HEADER, PAYSIM_ROWS))
    features = compute_features(frame)
    assert features.shape[0] == 4 and np.isfinite(features).all()


def test_a_ulb_file_gets_one_synthetic_account_per_row_and_keeps_its_components(
    tmp_path: Path,
) -> None:
    frame = load_ulb_csv(write(tmp_path, ULB_HEADER, ULB_ROWS))
    assert frame["from_account"].nunique() == 3 and frame["to_account"].nunique() == 3
    assert frame["label"].tolist() == [0, 1, 0]
    assert frame["v1"].tolist() == [-1.36] * 3 and frame["v28"].iloc[0] == pytest.approx(0.28)
    elapsed = (frame["timestamp"] - frame["timestamp"].iloc[0]).dt.total_seconds()
    assert elapsed.tolist() == [0, 406, 90061]


def test_ulb_rows_get_their_own_card_features(tmp_path: Path) -> None:
    frame = load_ulb_csv(write(tmp_path, ULB_HEADER, ULB_ROWS))
    features = compute_card_features(frame)
    assert features.shape == (3, len(CARD_FEATURE_NAMES)) and features.dtype == np.float32
    assert features[0, CARD_FEATURE_NAMES.index("v1")] == pytest.approx(-1.36 / 4)
    amount = features[:, CARD_FEATURE_NAMES.index("log_amount")]
    assert amount[0] > amount[2]  # 149.62 against 2.69
    # The account-history pipeline still runs but sees nothing: every row is a first sighting.
    history = compute_features(frame)
    assert (history[:, FEATURE_NAMES.index("src_first_seen")] == 1).all()


@pytest.mark.parametrize(
    ("header", "rows", "expected"),
    [
        ("Timestamp,From Bank,Account,To Bank,Account,Amount Received,Receiving Currency,"
         "Amount Paid,Payment Currency,Payment Format,Is Laundering,Typology",
         ["2022/09/01 00:20,1,A,2,B,1.00,Euro,1.00,Euro,ACH,0,"], "IBM AML"),
        (PAYSIM_HEADER, PAYSIM_ROWS, "PaySim"),
        (ULB_HEADER, ULB_ROWS, "ULB creditcard"),
    ],
)  # fmt: skip
def test_the_format_is_recognised_from_the_header(
    tmp_path: Path, header: str, rows: list[str], expected: str
) -> None:
    path = write(tmp_path, header, rows)
    assert detect_format(path).name == expected
    assert len(load_transactions(path)) == len(rows)


def test_trailing_unknown_columns_are_ignored_in_every_format(tmp_path: Path) -> None:
    paysim = load_transactions(
        write(tmp_path, PAYSIM_HEADER + ",note", [r + ",x" for r in PAYSIM_ROWS], "p.csv")
    )
    ulb = load_transactions(write(tmp_path, ULB_HEADER + ",note", [r + ",x" for r in ULB_ROWS]))
    assert "note" not in paysim.columns and "note" not in ulb.columns
    assert len(paysim) == 4 and len(ulb) == 3


def test_an_unknown_header_names_the_known_formats(tmp_path: Path) -> None:
    path = write(tmp_path, "date,payer,payee,value", ["2022-01-01,a,b,3"])
    with pytest.raises(DataError) as caught:
        load_transactions(path)
    message = str(caught.value)
    assert caught.value.line == 1 and str(path) in message
    assert all(name in message for name in ("IBM AML", "PaySim", "ULB creditcard", "nameOrig"))


def test_a_header_near_no_format_says_which_columns_the_nearest_one_needs(tmp_path: Path) -> None:
    path = write(tmp_path, "step,type,amount,nameOrig,nameDest", ["1,TRANSFER,5.0,C1,C2"])
    with pytest.raises(DataError, match="header matches no known format") as caught:
        detect_format(path)
    assert "the nearest, PaySim, also needs columns oldbalanceOrg, newbalanceOrig," in str(
        caught.value
    )


def test_reading_paysim_in_small_chunks_gives_the_same_frame(tmp_path: Path) -> None:
    path = write(tmp_path, PAYSIM_HEADER, PAYSIM_ROWS)
    pd.testing.assert_frame_equal(load_paysim_csv(path, chunksize=1), load_paysim_csv(path))


def test_ulb_account_ids_stay_unique_across_chunks(tmp_path: Path) -> None:
    frame = load_ulb_csv(write(tmp_path, ULB_HEADER, ULB_ROWS), chunksize=2)
    assert frame["from_account"].tolist() == ["card-0", "card-1", "card-2"]


BAD = {
    "paysim unknown type": (PAYSIM_HEADER, [PAYSIM_ROWS[0], PAYSIM_ROWS[1].replace("TRANSFER", "GIFT")], 3, "type"),
    "paysim fractional step": (PAYSIM_HEADER, [PAYSIM_ROWS[0].replace("1,", "1.5,", 1)], 2, "step"),
    "paysim balance not a number": (PAYSIM_HEADER, [*PAYSIM_ROWS[:2], PAYSIM_ROWS[2].replace("21182.0", "n/a")], 4, "oldbalanceDest"),
    "paysim flag not 0/1": (PAYSIM_HEADER, [PAYSIM_ROWS[0][:-1] + "7"], 2, "isFlaggedFraud"),
    "paysim missing column": (PAYSIM_HEADER.replace(",nameDest", ""), PAYSIM_ROWS, 1, "nameDest"),
    "paysim too many fields": (PAYSIM_HEADER, [PAYSIM_ROWS[0], PAYSIM_ROWS[1] + ",1"], 3, "field 12"),
    "ulb negative amount": (ULB_HEADER, [ULB_ROWS[0], ulb_row("5", amount="-3")], 3, "Amount"),
    "ulb component not a number": (ULB_HEADER, [ulb_row("0", v1="abc")], 2, "V1"),
    "ulb class not 0/1": (ULB_HEADER, [ULB_ROWS[0], ULB_ROWS[1], ulb_row("7", label="2")], 4, "Class"),
    "ulb missing component": (ULB_HEADER.replace(',"V17"', ""), [], 1, "V17"),
}  # fmt: skip


@pytest.mark.parametrize(("header", "rows", "line", "column"), BAD.values(), ids=BAD.keys())
def test_a_malformed_paysim_or_ulb_file_names_file_line_and_column(
    tmp_path: Path, header: str, rows: list[str], line: int, column: str
) -> None:
    path = write(tmp_path, header, rows)
    with pytest.raises(DataError) as caught:
        load_transactions(path)
    error = caught.value
    assert (error.path, error.line, error.column) == (str(path), line, column)
    assert f"line {line}" in str(error) and column in str(error)


def test_check_header_reads_only_the_header_and_names_a_missing_column(tmp_path: Path) -> None:
    good = write(tmp_path, PAYSIM_HEADER, ["not,a,row"], "good.csv")
    assert check_header(good).name == "PaySim"  # the malformed row is never read
    bad = write(tmp_path, PAYSIM_HEADER.replace(",isFraud", ""), [], "bad.csv")
    with pytest.raises(DataError, match=r"bad\.csv, line 1, column isFraud: required PaySim"):
        check_header(bad)


@pytest.mark.parametrize("command", ["run", "train-once"])
def test_the_node_refuses_a_data_file_without_a_required_column_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    from bank_node.cli import main

    data = write(tmp_path, PAYSIM_HEADER.replace(",isFraud", ""), [], "wallet.csv")
    (tmp_path / "node.toml").write_text(
        'portal_url = "http://127.0.0.1:9"\nbank = "alpha"\ncredential_file = "credential"\n'
        'signing_key_file = "signing.key"\nsecret_context_file = "consortium.secret"\n'
        f'ckks_params_file = "ckks_params.json"\ndata_file = "{data}"\n'
        'state_dir = "state"\nallow_unpinned_roster = true\n'
    )
    assert main([command, "--config", str(tmp_path / "node.toml")]) == 2
    err = capsys.readouterr().err
    assert f"{data}, line 1, column isFraud: required PaySim column 'isFraud' missing" in err

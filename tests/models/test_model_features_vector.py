"""models.features_vector computes compute_features' values bit for bit, before the float32 cast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.features import FEATURE_NAMES, PAYMENT_FORMATS, _entity
from models.features_vector import (
    DST_FEATURES,
    SRC_FEATURES,
    AccountRows,
    account_columns,
    row_columns,
)
from tests.bank_node.feature_frames import adversarial, pandas_float64


def vector_float64(
    frame: pd.DataFrame, wanted: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """The kernel's matrix for a frame as one bucket (NaN where a side is not ``wanted``)."""
    order = np.argsort(frame["timestamp"].to_numpy(), kind="stable")
    ordered = frame.iloc[order].reset_index(drop=True)
    n = len(ordered)
    codes = pd.factorize(pd.concat([_entity(ordered, "from"), _entity(ordered, "to")]))[0]
    secs = ordered["timestamp"].to_numpy().astype("datetime64[s]").astype(np.int64)
    paid = ordered["amount_paid"].to_numpy(np.float64)
    want_src, want_dst = (np.ones(n, bool),) * 2 if wanted is None else wanted
    received = ordered["amount_received"].to_numpy(np.float64)
    rows = AccountRows(codes[:n], codes[n:], secs, paid, received, want_src[order], want_dst[order])
    columns = account_columns(rows)
    formats = ordered["payment_format"].map({f: i for i, f in enumerate(PAYMENT_FORMATS)})
    differ = {
        "cross_bank": (ordered["from_bank"] != ordered["to_bank"]).to_numpy(),
        "currency_mismatch": (
            ordered["payment_currency"] != ordered["receiving_currency"]
        ).to_numpy(),
        "self_transfer": codes[:n] == codes[n:],
    }
    cols = row_columns(secs, paid, formats.fillna(-1).to_numpy(np.int64), differ)
    for side_rows, side in ((columns.src_rows, columns.src), (columns.dst_rows, columns.dst)):
        for name, values in side.items():
            cols[name] = np.full(n, np.nan)
            cols[name][side_rows] = values
    matrix = np.column_stack([cols[name] for name in FEATURE_NAMES])
    out = np.empty_like(matrix)
    out[order] = matrix
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_feature_equals_compute_features_bit_for_bit_before_the_cast(seed: int) -> None:
    frame = adversarial(seed)
    np.testing.assert_array_equal(vector_float64(frame), pandas_float64(frame))


def test_a_bucket_of_one_account_gives_that_accounts_sides_as_the_whole_frame_does() -> None:
    frame = adversarial(3, n=500)
    # The bucket of account "A" at bank "1": every row it sends or receives, and only its
    # own ends wanted, as the engine's partition writes a bucket.
    sends = ((frame["from_bank"] == "1") & (frame["from_account"] == "A")).to_numpy()
    receives = ((frame["to_bank"] == "1") & (frame["to_account"] == "A")).to_numpy()
    keep = sends | receives
    ours = vector_float64(frame[keep], (sends[keep], receives[keep]))
    theirs = pandas_float64(frame)[keep]
    for side, rows in ((SRC_FEATURES, sends[keep]), (DST_FEATURES, receives[keep])):
        columns = [FEATURE_NAMES.index(n) for n in side]
        np.testing.assert_array_equal(ours[rows][:, columns], theirs[rows][:, columns])
        assert np.isnan(ours[~rows][:, columns]).all()


def test_the_two_sides_and_the_row_features_name_every_feature_once() -> None:
    rows = AccountRows(*(np.zeros(0, np.int64),) * 3, *(np.zeros(0),) * 2,
                       *(np.zeros(0, bool),) * 2)  # fmt: skip
    row = row_columns(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), {
        "cross_bank": np.zeros(0, bool), "currency_mismatch": np.zeros(0, bool),
        "self_transfer": np.zeros(0, bool),
    })  # fmt: skip
    columns = account_columns(rows)
    names = [*row, *columns.src, *columns.dst]
    assert sorted(names) == sorted(FEATURE_NAMES)

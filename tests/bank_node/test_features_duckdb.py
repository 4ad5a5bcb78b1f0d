"""The out-of-core feature engine (DuckDB over `models.features_sql`) equals compute_features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from bank_node.data import load_ibm_csv
from bank_node.features_duckdb import EngineSettings, features_of, frame_features
from models.features import FEATURE_NAMES, compute_features
from models.features_sql import features_query
from simulation.world import generate_world
from tests.bank_node.feature_frames import adversarial, pandas_float64

# Sums of amounts are running sums minus running sums, as in pandas, but pandas' grouped
# cumsum is Kahan-compensated and sequential while an SQL window SUM is neither, so they
# differ in the last bits (measured: below 2e-11). log_amount is LN(1 + x) where pandas
# has log1p (below 2e-16). After the float32 cast these stay within one float32 ulp (or
# 1e-9 absolute, where a window's money cancels to ~1e-13 rather than pandas' exact 0);
# every other feature (counts, flags, calendar, recency, pairs) is bit-identical.
# A pass-through ratio divides two such differences: when a window's money is tiny next to
# the account's running total (1e-6 bitcoin beside 70,000 dollars), both engines' ratios
# carry a cancellation error of eps * total / window, up to 1e-4 in the adversarial frames.
RATIO_MASK = np.array([n.endswith("_pass_through_24h") for n in FEATURE_NAMES], dtype=float)
NOT_BIT_EXACT = {
    "log_amount", "amount_zscore_src", "src_pass_through_24h", "dst_pass_through_24h",
    *(n for n in FEATURE_NAMES if n.startswith(("src_out_sum_", "dst_in_sum_"))),
}  # fmt: skip


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """These tests touch no Django (the repo-wide fixture of this name needs it)."""


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("tiny_world")
    return out, generate_world(out, preset="tiny", seed=0)


def assert_same_features(frame: pd.DataFrame, *, ratio_atol: float) -> None:
    ours64, theirs64 = frame_features(frame, float_type="DOUBLE"), pandas_float64(frame)
    worst = (np.abs(ours64 - theirs64) - ratio_atol * RATIO_MASK).max(axis=0)
    assert worst.max() <= 1e-9, dict(zip(FEATURE_NAMES, worst, strict=True))
    ours, theirs = frame_features(frame), compute_features(frame)
    for i, name in enumerate(FEATURE_NAMES):
        if name in NOT_BIT_EXACT:
            # One float32 ulp, or 1e-9 where a cancelled sum leaves ~1e-13 for pandas' 0.
            atol = 1e-9 + ratio_atol * RATIO_MASK[i]
            np.testing.assert_allclose(ours[:, i], theirs[:, i], rtol=2**-23, atol=atol)
        else:
            np.testing.assert_array_equal(ours[:, i], theirs[:, i], err_msg=name)


def test_duckdb_features_equal_compute_features_on_a_tiny_world_bank(
    tiny_world: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = tiny_world
    assert_same_features(load_ibm_csv(out / manifest["banks"]["2"]["file"]), ratio_atol=0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_duckdb_features_equal_compute_features_on_adversarial_frames(seed: int) -> None:
    assert_same_features(adversarial(seed), ratio_atol=1e-4)


def test_rows_with_equal_timestamps_count_as_earlier_when_they_come_first() -> None:
    frame = adversarial(0, n=50).assign(timestamp=pd.Timestamp("2022-09-05 10:00"))
    ours = frame_features(frame)
    counts = np.expm1(ours[:, FEATURE_NAMES.index("src_out_count_1h")] * 4).round()
    expected = frame.groupby(["from_bank", "from_account"]).cumcount().to_numpy() + 1
    np.testing.assert_array_equal(counts, expected)


def test_an_account_id_at_two_banks_is_two_accounts() -> None:
    frame = adversarial(0, n=2).assign(
        from_bank=["1", "2"], from_account="A", to_bank="1", to_account=["B", "C"]
    )
    first_seen = frame_features(frame)[:, FEATURE_NAMES.index("src_first_seen")]
    np.testing.assert_array_equal(first_seen, [1.0, 1.0])


def test_an_empty_frame_gives_an_empty_matrix() -> None:
    assert frame_features(adversarial(0).iloc[:0]).shape == (0, len(FEATURE_NAMES))


def test_features_are_written_by_date_with_each_rows_line(
    tiny_world: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, manifest = tiny_world
    bank_file = out / manifest["banks"]["3"]["file"]
    written = features_of(bank_file, tmp_path, settings=EngineSettings(temp_directory=tmp_path))
    days = sorted(p.name for p in written.iterdir())
    frame = load_ibm_csv(bank_file)
    assert days[0] == f"day={frame['timestamp'].min():%Y-%m-%d}"
    assert len(days) == frame["timestamp"].dt.normalize().nunique()
    table = pq.read_table(written).to_pandas().sort_values("line")
    assert table["line"].tolist() == list(range(2, len(frame) + 2))
    np.testing.assert_array_equal(
        table[FEATURE_NAMES[:10]].to_numpy(), compute_features(frame)[:, :10]
    )


def test_the_query_names_every_feature_once_and_uses_no_duckdb_only_function() -> None:
    query = features_query("tx_input")
    for name in FEATURE_NAMES:
        assert query.count(f" AS {name}\n") + query.count(f" AS {name},") == 1, name
    for duckdb_only in ("FSUM", "LOG1P", "//", "EPOCH(", "ROUND_EVEN", "QUALIFY"):
        assert duckdb_only not in query.upper()

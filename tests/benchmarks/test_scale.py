"""benchmarks/scale.py at CI size: the engines agree and report their memory and speed."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from models.features import FEATURE_NAMES

ROWS = 20_000


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """These tests touch no Django (the repo-wide fixture of this name needs it)."""


def test_a_generated_bank_has_the_rows_asked_for_in_time_order(
    scale: ModuleType, tmp_path: Path
) -> None:
    path = scale.write_bank(tmp_path / "bank.csv", 2_345, chunk_rows=1_000)
    frame = pd.read_csv(path)
    assert len(frame) == 2_345
    assert frame["Timestamp"].is_monotonic_increasing
    assert ((frame["From Bank"] == 1) | (frame["To Bank"] == 1)).all()


def test_duckdb_and_pandas_agree_on_20k_rows_and_report_their_peak_memory(
    scale: ModuleType, tmp_path: Path
) -> None:
    source = scale.write_bank(tmp_path / "bank.csv", ROWS, seed=1)
    duck, duck_rss = scale.run_engine("duckdb", source, tmp_path / "duckdb", memory_limit="256MB")
    panda, panda_rss = scale.run_engine("pandas", source, tmp_path, save=True)
    assert duck["rows"] == panda["rows"] == ROWS
    assert duck_rss > 50 and panda_rss > 50  # MiB: an interpreter with numpy is more than that
    features = pd.read_parquet(tmp_path / "duckdb" / "features").sort_values("line")
    assert features["line"].tolist() == list(range(2, ROWS + 2))
    ours = features[FEATURE_NAMES].to_numpy(np.float32)
    np.testing.assert_allclose(ours, np.load(tmp_path / "pandas.npy"), rtol=2**-23, atol=1e-9)
    report = {**duck, "peak_rss_mib": duck_rss, "tx_per_s": ROWS / duck["total_s"]}
    assert "peak RSS" in scale._line(report) and duck["total_s"] > 0


def test_the_numpy_engine_equals_pandas_bit_for_bit_on_20k_rows_split_into_buckets(
    scale: ModuleType, tmp_path: Path
) -> None:
    source = scale.write_bank(tmp_path / "bank.csv", ROWS, seed=2)
    # 4MB: two threads with a budget of about 2,000 rows each, so several buckets and ranges.
    ours, rss = scale.run_engine("numpy", source, tmp_path / "numpy", memory_limit="4MB")
    panda, _ = scale.run_engine("pandas", source, tmp_path, save=True)
    assert ours["rows"] == panda["rows"] == ROWS and rss > 50 and ours["cpu_s"] > 0
    features = pd.read_parquet(tmp_path / "numpy" / "features").sort_values("line")
    assert features["line"].tolist() == list(range(2, ROWS + 2))
    expected = np.load(tmp_path / "pandas.npy")
    np.testing.assert_array_equal(features[FEATURE_NAMES].to_numpy(np.float32), expected)


def test_a_whole_world_is_featurised_bank_by_bank_and_its_rows_add_up(
    scale: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = tmp_path / "world"
    world.mkdir()
    scale.write_bank(world / "bank_1.csv", 3_000, seed=3)
    scale.write_bank(world / "bank_2.csv", 1_200, seed=4)
    assert (
        scale.main(["--world", str(world), "--engines", "numpy", "--work", str(tmp_path / "w")])
        == 0
    )
    printed = capsys.readouterr().out
    assert "world " in printed and "2 banks, 4,200 rows" in printed
    # Largest bank first, and no bank's features are left behind.
    assert printed.index("bank_1.csv") < printed.index("bank_2.csv")
    assert not list((tmp_path / "w").glob("numpy-*"))
    with pytest.raises(SystemExit, match="no bank_"):
        scale.main(["--world", str(tmp_path / "w"), "--work", str(tmp_path / "w")])

"""The numpy feature engine equals compute_features bit for bit, in one bucket or in many."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bank_node import bucket_slices
from bank_node.data import load_ibm_csv
from bank_node.feature_buckets import bucket_features, bucket_of, partition
from bank_node.features_duckdb import EngineSettings
from bank_node.features_numpy import features_of, frame_features, layout_for, write_features
from bank_node.staging import staged_tables
from models.features import FEATURE_NAMES, compute_features
from simulation.world import generate_world
from tests.bank_node.feature_frames import adversarial, heavy

# "1MB" leaves each of the two threads a budget of a few hundred rows: a 3000-row frame is
# split into several account buckets and rid ranges, as a large bank's file is.
ONE_BUCKET, MANY_BUCKETS = "1GB", "1MB"


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """These tests touch no Django (the repo-wide fixture of this name needs it)."""


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("tiny_world")
    return out, generate_world(out, preset="tiny", seed=0)


def written_features(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas().sort_values("line").reset_index(drop=True)


@pytest.mark.parametrize("memory_limit", [ONE_BUCKET, MANY_BUCKETS])
def test_a_tiny_world_banks_csv_gives_compute_features_values_bit_for_bit(
    tiny_world: tuple[Path, dict[str, Any]], tmp_path: Path, memory_limit: str
) -> None:
    out, manifest = tiny_world
    bank_file = out / manifest["banks"]["2"]["file"]
    settings = EngineSettings(memory_limit=memory_limit, temp_directory=tmp_path / "spill")
    table = written_features(features_of(bank_file, tmp_path, settings=settings))
    frame = load_ibm_csv(bank_file)
    assert table["line"].tolist() == list(range(2, len(frame) + 2))
    np.testing.assert_array_equal(table[FEATURE_NAMES].to_numpy(), compute_features(frame))


@pytest.mark.parametrize("memory_limit", [ONE_BUCKET, MANY_BUCKETS])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adversarial_frames_give_compute_features_values_bit_for_bit(
    seed: int, memory_limit: str
) -> None:
    frame = adversarial(seed)
    ours = frame_features(frame, memory_limit=memory_limit)
    np.testing.assert_array_equal(ours, compute_features(frame))


def test_a_small_memory_limit_splits_the_rows_into_buckets_and_ranges(tmp_path: Path) -> None:
    small = layout_for(tmp_path, 3000, EngineSettings(memory_limit=MANY_BUCKETS, threads=2))
    large = layout_for(tmp_path, 3000, EngineSettings(memory_limit=ONE_BUCKET, threads=2))
    assert small.buckets > 2 and small.range_rows < 3000
    assert (large.buckets, large.range_rows >= 3000) == (1, True)


def test_every_thread_gets_a_bucket_and_a_range_of_a_large_file(tmp_path: Path) -> None:
    layout = layout_for(tmp_path, 1_000_000, EngineSettings(memory_limit="4GB", threads=2))
    assert layout.buckets == 2 and layout.range_rows == 500_000


def test_an_empty_frame_gives_an_empty_matrix() -> None:
    assert frame_features(adversarial(0).iloc[:0]).shape == (0, len(FEATURE_NAMES))


def test_features_are_written_by_date_with_each_rows_line_and_label(
    tiny_world: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, manifest = tiny_world
    bank_file = out / manifest["banks"]["3"]["file"]
    settings = EngineSettings(memory_limit=MANY_BUCKETS, temp_directory=tmp_path / "spill")
    written, files, rows = write_features(bank_file, tmp_path / "features", settings=settings)
    frame = load_ibm_csv(bank_file)
    days = sorted(p.name for p in written.iterdir())
    assert (files, rows) == ((bank_file,), len(frame))
    assert days[0] == f"day={frame['timestamp'].min():%Y-%m-%d}"
    assert len(days) == frame["timestamp"].dt.normalize().nunique()
    table = written_features(written)
    assert table["label"].tolist() == frame["label"].tolist()
    stamps = frame["timestamp"].to_numpy().astype("datetime64[ns]").astype(np.int64)
    np.testing.assert_array_equal(table["tick"].to_numpy(), stamps)
    assert not list(settings.temp_directory.iterdir())  # the passes' files are removed


def test_the_file_for_scoring_keeps_the_input_order_and_each_rows_day(tmp_path: Path) -> None:
    frame = adversarial(1, n=400)
    frame.to_parquet(tmp_path / "input.parquet")
    settings = EngineSettings(memory_limit=MANY_BUCKETS, temp_directory=tmp_path / "spill")
    out, _, _ = write_features(
        tmp_path / "input.parquet", tmp_path / "f.parquet", settings=settings,
        partition_by_date=False,
    )  # fmt: skip
    table = pq.read_table(out)
    assert table["rid"].to_pylist() == list(range(400))
    assert table["line"].to_pylist() == list(range(1, 401))
    days = frame["timestamp"].to_numpy().astype("datetime64[D]")
    np.testing.assert_array_equal(table["day"].to_numpy(), days)


def test_an_account_lands_in_the_same_bucket_from_every_chunk_and_buckets_share_the_load() -> None:
    keys = pa.array([f"{bank}\x1fA{i}" for i in range(5_000) for bank in ("1", "22")])
    buckets = bucket_of(keys, 8)
    np.testing.assert_array_equal(bucket_of(keys.slice(1_000, 10), 8), buckets[1_000:1_010])
    shares = np.bincount(buckets, minlength=8) / len(keys)
    assert shares.min() > 0.09 and shares.max() < 0.16


@pytest.mark.parametrize("shares", [(0.5, 0.2), (0.8,)])
@pytest.mark.parametrize("memory_limit", ["1MB", "2MB"])
def test_a_bank_whose_busy_accounts_hold_most_rows_gives_compute_features_values_bit_for_bit(
    shares: tuple[float, ...], memory_limit: str
) -> None:
    frame = heavy(3, shares=shares)
    ours = frame_features(frame, memory_limit=memory_limit)
    np.testing.assert_array_equal(ours, compute_features(frame))


def test_a_bucket_with_a_busy_account_is_computed_in_slices_within_its_budget(
    tmp_path: Path,
) -> None:
    heavy(4, shares=(0.7,)).to_parquet(tmp_path / "input.parquet")
    layout = layout_for(tmp_path, 4000, EngineSettings(memory_limit="2MB", threads=2))
    partition(staged_tables([tmp_path / "input.parquet"]), layout)
    held = [bucket_features(layout, b) for b in range(layout.buckets)]
    sliced = [h for h in held if len(h) > 1]
    assert len(sliced) == 1 and len(sliced[0]) > 2  # the busy account's bucket, in slices
    assert max(sliced[0]) <= layout.slice_events == 1_250  # a slice and its history
    assert max(h[0] for h in held if len(h) == 1) <= layout.bucket_events == 2_000
    unsliced = layout_for(tmp_path, 4000, EngineSettings(memory_limit="2MB", threads=2),
                          slicing=False)  # fmt: skip
    assert unsliced.slice_events == 0


def test_accounts_get_one_code_whichever_slice_meets_them_and_a_hash_collision_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    codes = bucket_slices._Codes(0)
    first = codes(pa.array(["1\x1fA", "1\x1fB", "1\x1fA"]))
    assert first.tolist() == [0, 1, 0]
    assert codes(pa.array(["1\x1fC", "1\x1fB"])).tolist() == [2, 1]
    monkeypatch.setattr(bucket_slices, "key_hashes", lambda keys: np.zeros(len(keys), np.uint64))
    with pytest.raises(bucket_slices.HashCollision):
        bucket_slices._Codes(0)(pa.array(["1\x1fA", "1\x1fB"]))


def test_a_sliced_bucket_whose_keys_collide_is_computed_in_one_piece_with_the_same_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frame = heavy(5, n=2_000, shares=(0.7,))
    # Injected fault: every key hashes alike in the slices' coder (not in the bucket hash).
    monkeypatch.setattr(bucket_slices, "key_hashes", lambda keys: np.zeros(len(keys), np.uint64))
    ours = frame_features(frame, memory_limit="1MB")
    np.testing.assert_array_equal(ours, compute_features(frame))

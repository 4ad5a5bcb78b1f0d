"""Training streamed from Parquet feature files against training from in-memory arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.metrics import auprc
from models.nets import build_model
from models.stream_data import (
    StreamDataset,
    StreamSpec,
    count_rows,
    global_batches,
    parquet_files,
    raw_rows,
    stream_moments,
)
from models.training import TrainerSettings, predict_scores, train_local, train_stream
from models.vector import model_to_vector

SPEC = {"kind": "mlp", "hidden": [16, 8], "seed": 3, "loss": "bce", "pos_weight": 1.0}
COLUMNS = ("f0", "f1", "f2", "f3")
DAY_NS = 86_400 * 10**9


def write_days(directory: Path, days: int = 6, rows_per_day: int = 500, seed: int = 0) -> Path:
    """Feature files as ``features_duckdb`` writes them: one ``day=`` folder per date, each
    with the features, the label and the timestamp (``tick``), rows not in time order."""
    rng = np.random.default_rng(seed)
    for day in range(days):
        x = rng.normal(size=(rows_per_day, len(COLUMNS))) * [1, 2, 0.5, 3] + [0, 1, -2, 5]
        signal = x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=rows_per_day)
        ticks = day * DAY_NS + rng.integers(0, DAY_NS, rows_per_day)
        table = pa.table({
            "rid": np.arange(rows_per_day) + day * rows_per_day,
            **{c: x[:, i].astype(np.float32) for i, c in enumerate(COLUMNS)},
            "label": (signal > 2.2).astype(np.int8),
            "tick": ticks.astype(np.int64),
        })  # fmt: skip
        folder = directory / f"day=2024-01-{day + 1:02d}"
        folder.mkdir(parents=True)
        pq.write_table(table, folder / "data_0.parquet", row_group_size=128)
    return directory


def in_memory(spec: StreamSpec) -> tuple[np.ndarray, np.ndarray]:
    """Every row the stream would read, in its unshuffled order, as two arrays."""
    parts = list(raw_rows(spec))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@pytest.fixture
def days(tmp_path: Path) -> tuple[Path, ...]:
    return parquet_files(write_days(tmp_path / "features"))


def stream(files: tuple[Path, ...], **changes: object) -> StreamSpec:
    options: dict[str, object] = {"batch_size": 64, "buffer_rows": 10_000, "shuffle": False}
    return StreamSpec(files, COLUMNS, **{**options, **changes})  # type: ignore[arg-type]


def test_feature_files_are_listed_in_day_order(days: tuple[Path, ...]) -> None:
    assert [p.parent.name for p in days] == [f"day=2024-01-{d:02d}" for d in range(1, 7)]


def test_streaming_without_shuffling_trains_the_same_model_as_the_in_memory_loader(
    days: tuple[Path, ...],
) -> None:
    spec = stream(days)
    x, y = in_memory(spec)
    memory_model, stream_model = build_model(SPEC, 4), build_model(SPEC, 4)
    n_memory = train_local(memory_model, x, y, epochs=2, batch_size=64, lr=3e-3, shuffle=False)
    n_stream = train_stream(stream_model, spec, epochs=2, lr=3e-3)
    assert n_memory == n_stream == 3000
    difference = np.abs(model_to_vector(memory_model) - model_to_vector(stream_model)).max()
    assert difference < 1e-6
    assert (
        np.abs(model_to_vector(stream_model) - model_to_vector(build_model(SPEC, 4))).max() > 1e-3
    )


def test_a_buffer_smaller_than_a_batch_remainder_still_gives_the_in_memory_batches(
    days: tuple[Path, ...],
) -> None:
    x, y = in_memory(stream(days))
    batches = list(global_batches(stream(days, buffer_rows=100), None))
    assert [len(b[0]) for b in batches[:-1]] == [64] * (len(batches) - 1)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)


def test_a_shuffling_buffer_covering_every_row_permutes_all_of_them(
    days: tuple[Path, ...],
) -> None:
    x, _ = in_memory(stream(days))
    rng = np.random.default_rng(0)
    shuffled = np.concatenate([b[0] for b in global_batches(stream(days, shuffle=True), rng)])
    assert not np.array_equal(shuffled, x)
    np.testing.assert_array_equal(np.sort(shuffled[:, 0]), np.sort(x[:, 0]))


def test_a_small_shuffling_buffer_still_trains_a_model_that_beats_the_base_rate(
    days: tuple[Path, ...], tmp_path: Path
) -> None:
    test_files = parquet_files(write_days(tmp_path / "test", days=2, seed=9))
    x_test, y_test = in_memory(stream(test_files))
    model = build_model(SPEC, 4)
    train_stream(model, stream(days, buffer_rows=300, shuffle=True, seed=5), epochs=3, lr=3e-3)
    base_rate = float(y_test.mean())
    assert 0 < base_rate < 0.3
    assert auprc(y_test, predict_scores(model, x_test)) > 2 * base_rate


def test_normalisation_is_applied_to_every_batch_as_to_the_in_memory_arrays(
    days: tuple[Path, ...],
) -> None:
    mean, std = np.array([0.0, 1.0, -2.0, 5.0]), np.array([1.0, 2.0, 0.5, 3.0])
    x, _ = in_memory(stream(days))
    batches = global_batches(stream(days, mean=mean, std=std), None)
    streamed = np.concatenate([b[0] for b in batches])
    np.testing.assert_array_equal(streamed, ((x - mean) / std).astype(np.float32))


def test_the_training_period_bound_keeps_only_rows_before_it(days: tuple[Path, ...]) -> None:
    spec = stream(days, before_tick=3 * DAY_NS)
    assert count_rows(spec) == 1500
    assert sum(len(b[1]) for b in global_batches(spec, None)) == 1500


def test_moments_in_one_streaming_pass_equal_the_in_memory_computation(
    days: tuple[Path, ...],
) -> None:
    spec = stream(days, read_rows=97)
    x, _ = in_memory(spec)
    wide = x.astype(np.float64)
    expected = np.concatenate([wide.mean(axis=0), (wide**2).mean(axis=0)])
    moments, rows = stream_moments(spec)
    assert rows == len(x)
    np.testing.assert_allclose(moments, expected, rtol=1e-9, atol=0)


def test_a_row_without_a_label_is_refused_naming_its_file(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    table = pa.table({**{c: [1.0, 2.0] for c in COLUMNS}, "label": pa.array([1, None], pa.int8())})
    pq.write_table(table, path)
    with pytest.raises(ValueError, match=r"f\.parquet: 1 row\(s\) without a label"):
        list(raw_rows(stream((path,))))


def test_each_rank_takes_its_own_slice_of_every_global_batch(
    days: tuple[Path, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = stream(days, batch_size=100)
    slices = []
    for rank in range(2):
        monkeypatch.setattr("models.stream_data.shard_position", lambda r=rank: (r, 2, 0, 1))
        slices.append([b[0].numpy() for b in StreamDataset(spec)])
    assert len(slices[0]) == len(slices[1]) == 30
    x, _ = in_memory(spec)
    together = np.concatenate([np.concatenate(pair) for pair in zip(*slices, strict=True)])
    np.testing.assert_array_equal(together, x)


def test_dataloader_workers_share_the_global_batches_between_them(
    days: tuple[Path, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = stream(days, batch_size=100)
    seen = []
    for worker in range(3):
        monkeypatch.setattr("models.stream_data.shard_position", lambda w=worker: (0, 1, w, 3))
        seen.append([b[1].numpy() for b in StreamDataset(spec)])
    assert [len(s) for s in seen] == [10, 10, 10]
    assert sum(int(b.size) for s in seen for b in s) == 3000


def test_two_ddp_processes_on_gloo_train_the_same_model_as_one_process(
    days: tuple[Path, ...],
) -> None:
    spec = stream(days, batch_size=100, shuffle=True, buffer_rows=1000, seed=1)
    one, two = build_model(SPEC, 4), build_model(SPEC, 4)
    train_stream(one, spec, epochs=2, lr=3e-3)
    ddp = TrainerSettings(accelerator="cpu", devices=2, strategy="ddp_spawn")
    rows = train_stream(two, spec, epochs=2, lr=3e-3, settings=ddp)
    assert rows == 3000
    difference = np.abs(model_to_vector(one) - model_to_vector(two)).max()
    assert difference < 1e-5
    assert np.abs(model_to_vector(two) - model_to_vector(build_model(SPEC, 4))).max() > 1e-3

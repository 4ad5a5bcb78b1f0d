"""The chunked world generator: bounded memory, no row lost at a window's end, same design."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bank_node.data import load_transactions
from simulation.world import CHUNK_DAYS, PRESETS, TYPOLOGIES, generate_world
from simulation.world.banks import Rows, World
from simulation.world.chunked import in_time_order, window_starts, window_stream
from simulation.world.presets import resolve_params

# Every typology everywhere and more attempts than tiny, so the mix is measurable; holdouts
# as in the knobs tests, to check the chunked path keeps them.
HOLDOUT = {"cycle": ["1"], "account_takeover": ["2"]}
KNOBS: dict[str, Any] = {
    "days": 42,
    "train_typologies_per_bank": 0,
    "attempts_per_day": 10.0,
    "holdout": HOLDOUT,
}


@pytest.fixture(autouse=True)
def _blob_dir() -> None:
    """Stand in for the repo-wide autouse fixture of that name, which needs pytest-django's
    ``settings``; these tests touch no Django and also run with ``-p no:django``."""


def read(out: Path, manifest: dict[str, Any]) -> dict[str, pd.DataFrame]:
    return {
        bank: pd.read_csv(out / info["file"], dtype=str, keep_default_na=False)
        for bank, info in manifest["banks"].items()
    }


def digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, dict]]:
    """The same knobs and seed generated in memory and in 4-day windows."""
    out = {}
    for name, chunk_days in (("memory", 0), ("chunked", 4)):
        path = tmp_path_factory.mktemp(name)
        manifest = generate_world(path, seed=2, chunk_days=chunk_days, **KNOBS)
        out[name] = (manifest, read(path, manifest))
    return out


def test_the_chunked_path_writes_byte_identical_files_for_the_same_seed(tmp_path: Path) -> None:
    for name in ("a", "b"):
        generate_world(tmp_path / name, seed=3, chunk_days=3, days=14)
    generate_world(tmp_path / "c", seed=4, chunk_days=3, days=14)
    first, again, other = (digests(tmp_path / n) for n in ("a", "b", "c"))
    assert first == again
    assert set(first) == {"manifest.json", *(f"bank_{i}.csv" for i in range(1, 5))}
    assert all(first[name] != other[name] for name in first)


def test_every_chunked_bank_file_loads_with_the_nodes_loader_in_time_order(
    tmp_path: Path,
) -> None:
    manifest = generate_world(tmp_path, seed=1, chunk_days=3, days=21)
    assert manifest["chunk_days"] == 3
    for bank, info in manifest["banks"].items():
        frame = load_transactions(tmp_path / info["file"])
        assert len(frame) == info["rows"] > 0
        assert ((frame["from_bank"] == bank) | (frame["to_bank"] == bank)).all()
        assert frame["timestamp"].is_monotonic_increasing
        assert info["laundering_rows"] == int(frame["label"].sum())


def test_a_window_boundary_neither_drops_nor_duplicates_a_transaction() -> None:
    params = resolve_params("tiny", {"days": 21, "attempts_per_day": 10.0})
    params["holdout"] = {}
    stream = list(window_stream(World(4, params, 0), seed=0, chunk_days=3))
    generated = Rows.concat([rows for _, rows in stream])
    written = list(in_time_order(stream))
    # Schemes that start late in a window run on into the next: the carry is exercised.
    assert any((rows.t >= end).any() for end, rows in stream)
    starts = [0] + [end for end, _ in stream[:-1]]
    for (end, _), start, rows in zip(stream, starts, written, strict=True):
        assert ((rows.t >= start) & (rows.t < end)).all()
    expected = generated.take(np.argsort(generated.t, kind="stable"))
    together = Rows.concat(written)
    for column in ("t", "src", "dst", "usd", "fmt", "kind", "attempt", "typology"):
        assert np.array_equal(getattr(together, column), getattr(expected, column)), column


@pytest.mark.parametrize(
    ("days", "chunk_days", "expected"),
    [
        (21, 7, [(0, 7), (7, 7), (14, 7)]),
        (23, 7, [(0, 7), (7, 7), (14, 9)]),  # a 2-day remainder joins the last window
        (24, 7, [(0, 7), (7, 7), (14, 7), (21, 3)]),
        (7, 30, [(0, 7)]),
    ],
)
def test_windows_cover_every_day_once_and_none_is_shorter_than_three_days(
    days: int, chunk_days: int, expected: list[tuple[int, int]]
) -> None:
    assert window_starts(days, chunk_days) == expected


@pytest.mark.parametrize("chunk_days", [-1, 1, 2])
def test_windows_shorter_than_three_days_are_refused(tmp_path: Path, chunk_days: int) -> None:
    with pytest.raises(ValueError, match="chunk_days"):
        generate_world(tmp_path, chunk_days=chunk_days, days=7)


def test_the_chunked_world_has_the_in_memory_worlds_size_label_rate_and_typology_mix(
    both: dict[str, tuple[dict, dict]],
) -> None:
    memory, chunked = (both[name][0]["totals"] for name in ("memory", "chunked"))
    assert chunked["rows"] == pytest.approx(memory["rows"], rel=0.1)
    rate = {n: t["laundering_rows"] / t["rows"] for n, t in (("m", memory), ("c", chunked))}
    assert rate["c"] == pytest.approx(rate["m"], rel=0.25)
    attempts = {n: sum(t["attempts"].values()) for n, t in (("m", memory), ("c", chunked))}
    assert attempts["c"] == pytest.approx(attempts["m"], rel=0.15)
    for typology in TYPOLOGIES:
        share = {n: t["attempts"][typology] / attempts[n[0]]
                 for n, t in (("m", memory), ("c", chunked))}  # fmt: skip
        assert share["c"] == pytest.approx(share["m"], abs=0.06), typology


def test_the_chunked_world_has_the_in_memory_worlds_mix_of_benign_flows(
    both: dict[str, tuple[dict, dict]],
) -> None:
    def kinds(files: dict[str, pd.DataFrame]) -> pd.Series:
        return pd.concat(files.values())["Kind"].value_counts(normalize=True)

    memory, chunked = (kinds(both[name][1]) for name in ("memory", "chunked"))
    assert set(chunked.index) == set(memory.index)
    for kind in ("card", "bill", "b2b", "cash", "salary", "merchant_cash", "payout"):
        assert chunked[kind] == pytest.approx(memory[kind], rel=0.25), kind


def test_the_chunked_world_keeps_holdout_typologies_to_their_banks_while_training(
    both: dict[str, tuple[dict, dict]],
) -> None:
    manifest, files = both["chunked"]
    for typology, named in HOLDOUT.items():
        for bank, frame in files.items():
            in_train = frame["Timestamp"] < manifest["train_end"]
            train_seen = (frame[in_train]["Typology"] == typology).sum()
            held_out_seen = (frame[~in_train]["Typology"] == typology).sum()
            assert (train_seen > 0) == (bank in named), (typology, bank, train_seen)
            assert held_out_seen > 0, (typology, bank)
        assert manifest["train_banks"][typology] == named


# The child's own high-water mark: ru_maxrss would carry over the forking parent's (pytest's)
# peak across exec, VmHWM belongs to the new address space.
PEAK_SCRIPT = """
import pathlib, sys
from simulation.world import generate_world
generate_world(sys.argv[1], seed=0, chunk_days=int(sys.argv[2]), days=int(sys.argv[3]),
               persons_largest_bank=3500)
status = pathlib.Path("/proc/self/status").read_text().splitlines()
print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""


def peak_rss_kib(out: Path, *, chunk_days: int, days: int) -> int:
    """Peak RSS (KiB) of a fresh process that generates the world (memory, not time, so
    it may be asserted on a loaded machine)."""
    argv = [sys.executable, "-c", PEAK_SCRIPT, str(out), str(chunk_days), str(days)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def test_a_chunked_worlds_peak_memory_does_not_grow_with_its_length(tmp_path: Path) -> None:
    # Both worlds span several windows: a world of one week is one window, whose peak
    # depends on which schemes fall in it (measured: 17 MB below a longer world's), so
    # lengths are compared from three windows on.
    short = peak_rss_kib(tmp_path / "short", chunk_days=7, days=21)
    long = peak_rss_kib(tmp_path / "long", chunk_days=7, days=84)  # 4 times the rows
    in_memory = peak_rss_kib(tmp_path / "memory", chunk_days=0, days=84)
    manifest = json.loads((tmp_path / "long" / "manifest.json").read_text())
    assert manifest["totals"]["rows"] > 200_000
    # Most of a process's peak is Python and its libraries; compare what the rows add
    # (measured: 1.2-1.5 MB from 21 to 84 days chunked; 57 MB more for 84 days in memory).
    assert long - short < 6_000, (short, long)
    # The same long world in memory adds clearly more: the bound above is not trivial.
    assert in_memory - long > 24_000, (long, in_memory)


def test_the_large_presets_are_about_ibms_medium_and_large_sizes_and_chunked() -> None:
    small, medium, large = (PRESETS[p] for p in ("hi-small", "hi-medium", "hi-large"))

    def volume(p: dict[str, Any]) -> float:
        return float(p["days"] * p["persons_largest_bank"])

    # hi-small writes 5.0M transactions; rows grow with customers times days.
    assert 5.0 * volume(medium) / volume(small) == pytest.approx(30, rel=0.05)
    assert 5.0 * volume(large) / volume(small) == pytest.approx(180, rel=0.05)
    for p in (medium, large):  # the laundering rate per row stays hi-small's
        assert p["attempts_per_day"] / p["persons_largest_bank"] == pytest.approx(
            small["attempts_per_day"] / small["persons_largest_bank"]
        )
        assert p["holdout"] == small["holdout"]
    assert set(CHUNK_DAYS) == {"hi-medium", "hi-large"}
